"""The live identity: the accepted SVID, the TLS contexts built from it, and the reload history.

Like ``policy.store``: each accepted identity is an immutable ``Credentials`` value replaced whole, so a
handshake that took ``store.current`` keeps one consistent identity and context while a rotation installs the
next; open connections keep the context they were made with (``dataplane.tls.openssl``). Counters are plain
attributes the metrics collector reads at scrape time.

Validity is judged against ``clock`` whenever it is asked (``problem``), not only when the watcher polls, so
/ready turns 503 the moment the SVID expires.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import trio

from dataplane.telemetry.identity_metrics import IdentityReading, LoadedIdentity
from dataplane.tls.alpn import MESH_PROTOCOLS
from dataplane.tls.openssl import TLSContext, client_context, server_context
from identity.load import Identity

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class Credentials:
    """One accepted identity and the contexts for new handshakes: inbound (server) and outbound (client)."""

    identity: Identity
    server: TLSContext
    client: TLSContext
    generation: int
    """1 for the first identity loaded, +1 per rotation."""
    loaded_at: float
    """Unix time it was accepted."""


@dataclass(frozen=True, slots=True)
class IdentityFailure:
    """Why the last load of the directory was refused; the previous identity (if any) stayed."""

    at: float
    """Unix time of the refusal."""
    path: Path
    """The file at fault (or the directory)."""
    problem: str


class IdentityStore:
    """The current credentials of a ``--identity`` directory. Use from one trio thread (no locking)."""

    def __init__(
        self, directory: Path, *, protocols: Sequence[str] = MESH_PROTOCOLS, clock: Clock | None = None
    ) -> None:
        self.directory = directory
        self.protocols = tuple(protocols)
        self.clock: Clock = clock or _utc_now
        self._current: Credentials | None = None
        self._changed = trio.Event()
        self.last_error: IdentityFailure | None = None
        self.reloads_succeeded = 0
        self.reloads_failed = 0

    @property
    def current(self) -> Credentials | None:
        """The credentials for new handshakes; None until a valid identity has been loaded."""
        return self._current

    def apply(self, identity: Identity) -> Credentials:
        """Build contexts for ``identity`` and make them current; wakes ``wait_for_generation`` callers."""
        generation = self._current.generation + 1 if self._current is not None else 1
        self._current = Credentials(
            identity=identity,
            server=server_context(identity, protocols=self.protocols, clock=self.clock),
            client=client_context(identity, protocols=self.protocols, clock=self.clock),
            generation=generation,
            loaded_at=time.time(),
        )
        self.last_error = None
        self.reloads_succeeded += 1
        self._wake()
        return self._current

    def reject(self, failure: IdentityFailure) -> None:
        """Record a refused load; the current credentials (if any) stay."""
        self.last_error = failure
        self.reloads_failed += 1
        self._wake()

    def problem(self) -> str | None:
        """Why there is no identity valid now (for /ready), or None when there is one."""
        current = self._current
        if current is None:
            error = self.last_error
            if error is None:
                return f"{self.directory} not loaded yet"
            return f"{error.path}: {error.problem}"
        not_after = current.identity.not_after
        if self.clock() > not_after:
            return f"identity expired at {not_after.isoformat()}"
        return None

    def reading(self) -> IdentityReading:
        """What the metrics show, read at scrape time."""
        current = self._current
        loaded = None
        if current is not None:
            identity = current.identity
            loaded = LoadedIdentity(
                spiffe_id=str(identity.spiffe_id),
                serial=f"{identity.serial:x}",
                not_after=identity.not_after.timestamp(),
                loaded_at=current.loaded_at,
            )
        return IdentityReading(
            loaded=loaded,
            valid=self.problem() is None,
            reloads_succeeded=self.reloads_succeeded,
            reloads_failed=self.reloads_failed,
        )

    async def wait_for_generation(self, after: int) -> Credentials:
        """Return the current credentials as soon as their generation is greater than ``after``."""
        await trio.lowlevel.checkpoint()
        while self._current is None or self._current.generation <= after:
            await self._changed.wait()
        return self._current

    async def wait_for_refusal(self, after: int) -> IdentityFailure:
        """Return the last refusal as soon as ``reloads_failed`` is greater than ``after``."""
        await trio.lowlevel.checkpoint()
        while self.last_error is None or self.reloads_failed <= after:
            await self._changed.wait()
        return self.last_error

    def _wake(self) -> None:
        # Event swap: waiters on the old event wake and re-check; later waiters get the new one.
        changed, self._changed = self._changed, trio.Event()
        changed.set()

    def __repr__(self) -> str:
        current = self._current
        held = f"{current.identity.spiffe_id} serial={current.identity.serial:x}" if current else "none"
        return (
            f"<IdentityStore {self.directory} identity={held} "
            f"reloads ok={self.reloads_succeeded} failed={self.reloads_failed}>"
        )


def _utc_now() -> datetime:
    return datetime.now(UTC)
