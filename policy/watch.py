"""Watch a bundle file and apply each valid change to the store; keep the last good policy otherwise.

Theory of operation. Every ``poll_interval`` the watcher stats the path, following symlinks, and compares
(st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns) with what it last handled. Polling, not inotify,
because it survives every way the file gets replaced with no special cases: rename-into-place gives a new
inode; the Kubernetes ConfigMap pattern swaps a ``..data`` symlink to a new directory (the path's target,
hence inode, changes); editors writing in place change size and times; deletion shows as ENOENT. inotify
would need re-arming on the parent directory after every rename or symlink swap, and a missed event is
silent; a stat of one path five times a second costs nothing.

A changed signature is read only once it has been stable for ``settle`` seconds, so a file being written is
not parsed mid-write; the read itself is checked with fstat before and after. Timestamps are coarse (a
jiffy, or 2 s on FAT), so a same-size rewrite in the same tick as the last read could keep its signature.
Like git's "racy" index entries, a file read within ``_RACY_WINDOW_NS`` of its mtime is re-read and hashed
on each poll until a read happens safely after it.

Reads are plain synchronous os calls, not trio.Path: the file is small and local (a ConfigMap is tmpfs), a
read takes microseconds, and staying on the trio thread keeps autojump_clock tests deterministic.

Each bad state is counted once: the watcher remembers what it handled, so an invalid or missing file is
rejected on the first poll that sees it and not again until the file changes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from typing import Final, NoReturn

import msgspec
import trio

from policy.load import PolicyError, Problem, decode_policy, describe_os_error, format_for_path, read_bundle
from policy.store import PolicyStore, ReloadFailure

LOGGER = logging.getLogger(__name__)

# Longest file timestamp granularity we must outwait before trusting a signature: FAT's 2 seconds.
_RACY_WINDOW_NS: Final = 2_000_000_000
_NOT_FOUND: Final = "file not found"

# (st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns), or why the path cannot be stat'ed.
_Signature = tuple[int, int, int, int, int]
_Observation = _Signature | str


class _Handled(msgspec.Struct, frozen=True):
    """The file state the watcher last acted on."""

    observation: _Observation
    digest: bytes | None
    """sha256 of the bytes read; None if they could not be read."""
    racy: bool
    """Read too soon after its mtime for the signature alone to prove later bytes equal."""


class _Read(msgspec.Struct, frozen=True):
    signature: _Signature
    data: bytes
    digest: bytes
    racy: bool


async def watch_policy(
    path: str | os.PathLike[str],
    store: PolicyStore,
    *,
    poll_interval: float = 0.2,
    settle: float = 0.2,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Apply valid changes of the bundle at ``path`` to ``store`` until cancelled.

    The caller loads the first policy itself (a bad file at boot is fatal for it). The first poll re-reads the
    file, so a change made between that load and this call is not lost; identical content changes nothing.
    A change is picked up within ``poll_interval + settle`` (0.4 s with the defaults).

    Error handling: an invalid, unreadable or missing file is logged once at WARNING, counted once in
    ``store.reloads_failed`` and recorded in ``store.last_error``; the active policy stays.
    """
    if poll_interval <= 0 or settle < 0:
        raise ValueError("poll_interval must be positive and settle must not be negative")
    watcher = _Watcher(os.fspath(path), store)
    task_status.started()
    while True:
        seen = watcher.observe()
        if watcher.changed(seen):
            while True:  # wait until the file holds still for `settle` seconds
                await trio.sleep(settle)
                again = watcher.observe()
                if again == seen:
                    break
                seen = again
            watcher.handle(seen)
        await trio.sleep(poll_interval)


class _Watcher:
    def __init__(self, path: str, store: PolicyStore) -> None:
        self._path = path
        self._format = format_for_path(path)
        self._store = store
        self._handled: _Handled | None = None  # None: check whatever is there on the first poll

    def observe(self) -> _Observation:
        try:
            st = os.stat(self._path)
        except (FileNotFoundError, NotADirectoryError):
            return _NOT_FOUND
        except OSError as exc:
            return describe_os_error(exc)
        return _signature(st)

    def changed(self, seen: _Observation) -> bool:
        handled = self._handled
        if handled is None or seen != handled.observation:
            return True
        if not handled.racy:
            return False
        read = self._read()
        if isinstance(read, str) or read.digest != handled.digest:
            return True
        self._handled = _Handled(read.signature, read.digest, read.racy)
        return False

    def handle(self, seen: _Observation) -> None:
        """Act on a settled file state: apply it, or reject it once."""
        if not self.changed(seen):
            return  # settled back to the state already handled
        if isinstance(seen, str):
            self._handled = _Handled(seen, None, racy=False)
            self._refuse(seen, (), file_present=seen != _NOT_FOUND)
            return
        read = self._read_new_bytes(seen)
        if read is not None:
            self._apply_or_refuse(read.data)

    def _read_new_bytes(self, seen: _Signature) -> _Read | None:
        """The bytes behind the settled signature ``seen``, or None if there is nothing new to decide."""
        read = self._read()
        if isinstance(read, str):
            if read != _NOT_FOUND:  # not found: it vanished after the stat; the next poll reports that
                self._handled = _Handled(seen, None, racy=False)
                self._refuse(read, (), file_present=True)
            return None
        if read.signature != seen:
            return None  # it changed after settling; the next poll sees the new signature and settles again
        previous, self._handled = self._handled, _Handled(seen, read.digest, read.racy)
        if previous is not None and previous.digest == read.digest:
            return None  # the same bytes rewritten: what we decided about them still holds
        return read

    def _apply_or_refuse(self, data: bytes) -> None:
        try:
            policy = decode_policy(data, self._format, source=self._path)
        except PolicyError as exc:
            self._refuse("invalid policy", exc.problems, file_present=True)
            return
        active = self._store.current
        healthy = self._store.last_error is None and self._store.file_present
        if healthy and policy == active.policy:
            return
        # After a failure even an unchanged policy is applied again, so the recovery shows as a new
        # generation and a successful reload, and last_error clears.
        snapshot = self._store.apply(policy, source=self._path)
        LOGGER.info(
            "policy reloaded from %s: version %s -> %s (generation %d)",
            self._path,
            active.version,
            snapshot.version,
            snapshot.generation,
        )

    def _refuse(self, reason: str, problems: tuple[Problem, ...], *, file_present: bool) -> None:
        version = self._store.current.version
        message = f"{reason}, keeping policy {version}"
        if problems:
            message += ": " + "; ".join(_problem_text(problem) for problem in problems)
        failure = ReloadFailure(at=time.time(), source=self._path, message=message, problems=problems)
        self._store.reject(failure, file_present=file_present)
        LOGGER.warning("policy reload from %s rejected: %s", self._path, message)

    def _read(self) -> _Read | str:
        """The file's bytes with the signature they were read under, or why they could not be read."""
        started_ns = time.time_ns()
        try:
            with open(self._path, "rb") as file:
                before = _signature(os.fstat(file.fileno()))
                data = read_bundle(file, self._path)
                after = _signature(os.fstat(file.fileno()))
        except (FileNotFoundError, NotADirectoryError):
            return _NOT_FOUND
        except OSError as exc:
            return describe_os_error(exc)
        except PolicyError as exc:  # larger than a bundle may be
            return exc.problems[0].message
        if before != after:
            return "the file changed while it was read"
        racy = before[3] >= started_ns - _RACY_WINDOW_NS
        return _Read(before, data, hashlib.sha256(data).digest(), racy)


def _problem_text(problem: Problem) -> str:
    return f"{problem.path}: {problem.message}" if problem.path else problem.message


def _signature(st: os.stat_result) -> _Signature:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
