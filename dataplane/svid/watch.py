"""Watch an identity directory and install each valid change; keep the last good identity otherwise.

Theory of operation. Every ``poll_interval`` the watcher reads the three files as one set
(``identity.files.read_set``, which resolves the ``..data`` symlink of ``meshctl ca issue``/kubelet publishing
once) and hashes them. Reading a few kilobytes twice a second costs microseconds and, unlike comparing stat
signatures, cannot miss a same-size rewrite within one timestamp tick: the content is the signature. A changed
digest is acted on when the next poll finds it unchanged, so files written by hand one after the other are not
judged half-way; a change applies within two poll intervals (1 s with the default; the brief asks for 2 s).

A valid set (``identity.load.load_identity``: the key matches, the SVID chains to the bundle and is valid now)
replaces the current credentials; new handshakes use the new contexts and open connections keep theirs. A
broken or mismatched set is refused with one log line naming the file and the problem, counted once, and the
last good identity stays. An unchanged refused set is re-checked every ``recheck`` seconds in silence, so a
certificate that was not yet valid is taken once it is (it is logged again only if the problem changes).

Expiry needs no file change: ``IdentityStore.problem`` compares the clock with notAfter whenever /ready asks,
and the watcher logs the expiry once.

Reads are plain synchronous calls on the trio thread, as in ``policy.watch``: the files are small and local
(a Secret volume is tmpfs), and staying on the trio thread keeps autojump_clock tests deterministic.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Final, NoReturn

import trio

from dataplane.svid.store import IdentityFailure, IdentityStore
from identity.authority import BUNDLE_FILE, CERT_FILE, KEY_FILE
from identity.files import MaterialError, read_set
from identity.load import Identity, IdentityError, load_identity

LOGGER = logging.getLogger(__name__)

_NAMES: Final = (CERT_FILE, KEY_FILE, BUNDLE_FILE)

# What the directory held at one poll: the sha256 of the set, or (file, problem) when it could not be read.
_Observation = bytes | tuple[Path, str]


async def watch_identity(
    store: IdentityStore,
    *,
    poll_interval: float = 0.5,
    recheck: float = 5.0,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Load ``store.directory`` now, then apply its valid changes to ``store`` until cancelled.

    ``started`` after the first load, whatever its outcome: a bad directory at start is logged at ERROR and
    leaves the store without credentials (the proxy is not ready), it does not stop the proxy.

    Error handling: an unreadable, broken or mismatched set is logged once at WARNING, counted once in
    ``store.reloads_failed`` and recorded in ``store.last_error``; the current identity stays.
    """
    if poll_interval <= 0 or recheck <= 0:
        raise ValueError("poll_interval and recheck must be positive")
    watcher = _Watcher(store)
    watcher.handle(watcher.observe())
    task_status.started()
    next_recheck = trio.current_time() + recheck
    previous = watcher.handled
    while True:
        await trio.sleep(poll_interval)
        seen = watcher.observe()
        if seen != watcher.handled:
            if seen == previous:  # unchanged for a whole poll interval: the writer is done
                watcher.handle(seen)
        elif store.last_error is not None and trio.current_time() >= next_recheck:
            next_recheck = trio.current_time() + recheck
            watcher.handle(seen, quiet=True)
        previous = seen
        watcher.note_expiry()


class _Watcher:
    def __init__(self, store: IdentityStore) -> None:
        self._store = store
        self._directory = store.directory
        self.handled: _Observation | None = None  # None: judge whatever is there on the first look
        self._expiry_logged: int | None = None  # the generation whose expiry was logged

    def observe(self) -> _Observation:
        try:
            files = read_set(self._directory, _NAMES)
        except MaterialError as exc:
            return (exc.path, exc.problem)
        digest = hashlib.sha256()
        for name in _NAMES:
            digest.update(len(files[name]).to_bytes(8, "big"))
            digest.update(files[name])
        return digest.digest()

    def handle(self, seen: _Observation, *, quiet: bool = False) -> None:
        """Act on a settled directory state: install it, or refuse it (logged and counted once per problem)."""
        self.handled = seen
        if isinstance(seen, tuple):
            self._refuse(*seen, quiet=quiet)
            return
        try:
            identity = load_identity(self._directory, now=self._store.clock())
        except IdentityError as exc:
            self._refuse(exc.path, exc.problem, quiet=quiet)
            return
        self._install(identity)

    def note_expiry(self) -> None:
        """Log once per identity that it expired while loaded (/ready already says so)."""
        current = self._store.current
        if current is None or self._expiry_logged == current.generation:
            return
        if self._store.clock() > current.identity.not_after:
            self._expiry_logged = current.generation
            LOGGER.error(
                "identity %s (serial %x) expired at %s: not ready until a new identity is written to %s",
                current.identity.spiffe_id,
                current.identity.serial,
                current.identity.not_after.isoformat(),
                self._directory,
            )

    def _install(self, identity: Identity) -> None:
        previous = self._store.current
        credentials = self._store.apply(identity)
        if previous is None:
            LOGGER.info(
                "identity %s loaded from %s: serial %x, valid until %s",
                identity.spiffe_id,
                self._directory,
                identity.serial,
                identity.not_after.isoformat(),
            )
            return
        LOGGER.info(
            "identity reloaded from %s: %s serial %x -> %s serial %x, valid until %s (generation %d)",
            self._directory,
            previous.identity.spiffe_id,
            previous.identity.serial,
            identity.spiffe_id,
            identity.serial,
            identity.not_after.isoformat(),
            credentials.generation,
        )

    def _refuse(self, path: Path, problem: str, *, quiet: bool) -> None:
        last = self._store.last_error
        if quiet and last is not None and (last.path, last.problem) == (path, problem):
            return  # the re-check found what was already reported
        self._store.reject(IdentityFailure(at=time.time(), path=path, problem=problem))
        current = self._store.current
        if current is None:
            LOGGER.error(
                "identity from %s refused: %s: %s; not ready until a valid identity is written there",
                self._directory,
                path,
                problem,
            )
            return
        LOGGER.warning(
            "identity reload from %s refused: %s: %s; keeping %s serial %x",
            self._directory,
            path,
            problem,
            current.identity.spiffe_id,
            current.identity.serial,
        )
