"""What every refusal must show on a real proxy: the connections closed with the contract's reason, counted in
/metrics, and not one connection or byte at the application."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from tests.dataplane.mtls.app import RecordingApp
from tests.dataplane.mtls.proxy import MeshProxy, Record

CLOSED: str = "triomesh_connections_closed_total"


@dataclass
class Refusals:
    records: list[Record] = field(default_factory=list)


@asynccontextmanager
async def refused(
    proxy: MeshProxy,
    app: RecordingApp,
    reasons: str | Collection[str],
    *,
    count: int,
    direction: str = "inbound",
    app_connects: bool = False,
) -> AsyncIterator[Refusals]:
    """Around a block that makes ``count`` connections the proxy must refuse, each with one of ``reasons``.

    ``app_connects``: the application may see a TCP connect, never a byte (a permissive port connects before it
    reads the client; a peer proxy that completed its side of the handshake). Strict ports allow no connect."""
    allowed = {reasons} if isinstance(reasons, str) else set(reasons)
    baseline = await proxy.last_id()
    before = {reason: await proxy.metric(CLOSED, direction=direction, reason=reason) for reason in allowed}
    outcome = Refusals()
    yield outcome
    outcome.records = records = await proxy.closed_since(baseline, count)
    observed = [rec["close_reason"] for rec in records]
    assert all(reason in allowed for reason in observed), f"{observed}, expected {sorted(allowed)}: {records}"
    for rec in records:
        assert rec["direction"] == direction, f"{rec}"
        assert rec["bytes_to_upstream"] == 0, f"{rec}"
        assert rec.get("client_id") is None, f"{rec}"  # nobody was authenticated
    after = {reason: await proxy.metric(CLOSED, direction=direction, reason=reason) for reason in allowed}
    assert sum(after.values()) - sum(before.values()) == count, (before, after)
    if not app_connects:
        assert app.connections == 0, f"{app.connections} connection(s) reached the application"
    assert app.received == b"", f"the application received {bytes(app.received)!r}"
