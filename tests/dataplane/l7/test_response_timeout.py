"""The policy's response timeout through the whole proxy: a slow upstream is answered 504 in time, and the client
connection is closed after it (the upstream exchange it was part of is abandoned half-way)."""

from __future__ import annotations

from pathlib import Path

import trio

from dataplane.net.addr import SockAddr
from tests.apps import origin
from tests.dataplane.l7.harness import running_proxy
from tests.dataplane.l7.test_drain import GET, read_response


async def test_a_response_slower_than_the_policy_timeout_is_504(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("timeouts: {response: 300ms}\n")
    with origin.running_origin() as (host, port):
        async with running_proxy(SockAddr(host, port), "--policy", str(policy)) as running:
            client = await trio.open_tcp_stream(running.listen.ip, running.listen.port)
            started = trio.current_time()
            await client.send_all(GET % b"slow/3000")
            response = await read_response(client)
            took = trio.current_time() - started
            head = response.split(b"\r\n\r\n")[0].lower()
            assert head.startswith(b"http/1.1 504 ")
            assert b"x-triomesh-error: no response from upstream within 0.3s" in head
            assert 0.3 <= took < 2.0
            assert b"\r\nconnection: close" in head
            with trio.fail_after(2):
                assert await client.receive_some() == b""
            await client.aclose()
