"""The live policy: the accepted snapshot every new connection reads, plus the reload history metrics show.

Snapshots are immutable and replaced whole, so a connection that read ``store.current`` keeps a consistent
view for its lifetime while a reload installs the next generation. Counters are plain attributes: the proxy's
metrics read them at scrape time, so this package needs no metrics library.
"""

from __future__ import annotations

import time
from typing import Final

import msgspec
import trio

from policy.index import PolicyIndex
from policy.load import Problem, policy_version
from policy.model import Policy

EMBEDDED_DEFAULT_SOURCE: Final = "embedded-default"
"""The ``source`` of a store built from ``policy.model.DEFAULT_POLICY`` (``mesh-proxy`` without --policy)."""


class Snapshot(msgspec.Struct, frozen=True):
    """One accepted policy generation. msgspec does not check field types on construction, so it can hold the
    (immutable) PolicyIndex; it is never encoded."""

    policy: Policy
    index: PolicyIndex
    version: str
    """``policy_version(policy)``: a short content hash."""
    generation: int
    """1 for the first policy, +1 per applied change."""
    source: str
    """The file path, or ``embedded-default``."""
    loaded_at: float
    """Unix time the snapshot was applied."""


class ReloadFailure(msgspec.Struct, frozen=True):
    """Why the last reload was refused; the previous snapshot stayed active."""

    at: float
    """Unix time of the failed reload."""
    source: str
    message: str
    """One line for logs and ``meshctl status``."""
    problems: tuple[Problem, ...]
    """Every problem in the bundle; empty when the file itself is missing or unreadable."""


class PolicyStore:
    """The current snapshot and reload bookkeeping. Use from one trio thread (no locking)."""

    def __init__(self, policy: Policy, *, source: str) -> None:
        self._current = _snapshot(policy, source=source, generation=1)
        self._changed = trio.Event()
        self.last_error: ReloadFailure | None = None
        self.reloads_succeeded = 0
        self.reloads_failed = 0
        self.file_present = True
        self.last_success_at = self._current.loaded_at

    @property
    def current(self) -> Snapshot:
        return self._current

    def apply(self, policy: Policy, *, source: str) -> Snapshot:
        """Install ``policy`` as the next generation and wake ``wait_for_generation`` callers."""
        snapshot = _snapshot(policy, source=source, generation=self._current.generation + 1)
        self._current = snapshot
        self.last_error = None
        self.reloads_succeeded += 1
        self.file_present = True
        self.last_success_at = snapshot.loaded_at
        # Event swap: waiters on the old event wake and re-check; later waiters get the new one.
        changed, self._changed = self._changed, trio.Event()
        changed.set()
        return snapshot

    def reject(self, failure: ReloadFailure, *, file_present: bool = True) -> None:
        """Record a refused reload; the current snapshot stays active."""
        self.last_error = failure
        self.reloads_failed += 1
        self.file_present = file_present

    async def wait_for_generation(self, after: int) -> Snapshot:
        """Return the current snapshot as soon as its generation is greater than ``after``."""
        if self._current.generation > after:
            await trio.lowlevel.checkpoint()  # trio's rule: an async call always checkpoints
            return self._current
        while self._current.generation <= after:
            await self._changed.wait()
        return self._current

    def __repr__(self) -> str:
        snap = self._current
        return (
            f"<PolicyStore generation={snap.generation} version={snap.version} source={snap.source!r} "
            f"reloads ok={self.reloads_succeeded} failed={self.reloads_failed} present={self.file_present}>"
        )


def _snapshot(policy: Policy, *, source: str, generation: int) -> Snapshot:
    return Snapshot(
        policy=policy,
        index=PolicyIndex(policy),
        version=policy_version(policy),
        generation=generation,
        source=source,
        loaded_at=time.time(),
    )
