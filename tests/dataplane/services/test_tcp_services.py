"""Opaque TCP to a service's virtual address: balanced per connection, a refusing endpoint skipped, mesh-less."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import trio

from tests.dataplane.services.endpoints import endpoints, refusing, service_policy, service_proxy


async def _name_of_endpoint(addr: object) -> bytes:
    """Open a connection through the proxy, send a request line and read the endpoint's answer (its name)."""
    stream = await trio.open_tcp_stream(addr.ip, addr.port)  # type: ignore[attr-defined]
    async with stream:
        await stream.send_all(b"GET / HTTP/1.1\r\ncontent-length: 0\r\n\r\n")
        data = b""
        while not data.endswith((b"a", b"b", b"c")):
            chunk = await stream.receive_some()
            if not chunk:
                break
            data += chunk
    return data[-1:]


async def test_opaque_connections_are_balanced_per_connection(tmp_path: Path) -> None:
    async with endpoints("a", "b", "c") as apps:
        policy = service_policy(apps, port_extra=", protocol: opaque")
        async with service_proxy(tmp_path, policy) as running:
            seen: Counter[bytes] = Counter()
            for _ in range(60):
                seen[await _name_of_endpoint(running.listen)] += 1
            assert set(seen) == {b"a", b"b", b"c"}, seen
            with trio.fail_after(2):  # the last connection's close reaches the table a moment after the client's
                while running.proxy.table.live:
                    await trio.sleep(0.01)
            recs = [rec for rec in running.proxy.table.recent if rec.service == "web:80"]
            assert len(recs) == 60 and all(rec.protocol == "opaque" for rec in recs)
            assert {rec.upstream for rec in recs} == {app.address for app in apps}
            rows = list(running.proxy.runtime.services.rows())
            assert rows[0].queue_length == 0  # every closed connection left the balancer's load


async def test_a_refused_endpoint_is_skipped_for_the_next(tmp_path: Path) -> None:
    async with endpoints("a", "b") as apps:
        refusing(apps[0])
        policy = service_policy(apps, port_extra=", protocol: opaque")
        async with service_proxy(tmp_path, policy) as running:
            for _ in range(20):
                assert await _name_of_endpoint(running.listen) == b"b"
