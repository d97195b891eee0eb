"""The per-connection handler end to end on loopback: close reasons, resets, idle timeout, table and metrics."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from dataplane.net.addr import SockAddr
from dataplane.telemetry.metrics import ProxyMetrics, ProxyState
from policy.duration import Duration
from policy.model import Policy, Timeouts
from tests.dataplane.proxy_harness import echo_server, free_port, running_proxy


@pytest.fixture(params=[True, False], ids=["engine", "tasks"])
def engine(request: pytest.FixtureRequest) -> bool:
    """Every handler test runs with the relay engine and with the per-connection trio relay."""
    return bool(request.param)


async def _read_all(stream: trio.SocketStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    return data


async def test_echo_through_the_proxy_is_recorded(engine: bool) -> None:
    async with echo_server() as upstream, running_proxy(upstream, engine=engine) as h:
        client = await h.connect()
        await client.send_all(b"x" * 100_000)
        await client.send_eof()
        assert await _read_all(client) == b"x" * 100_000
        await client.aclose()
        with trio.fail_after(5):
            while h.table.live:
                await trio.sleep(0.01)
    rec = h.table.recent[0]
    assert rec.close_reason == "completed"
    assert (rec.up.sent, rec.down.sent) == (100_000, 100_000)
    assert rec.original_dst == upstream
    assert rec.upstream == upstream
    assert rec.policy_version == h.store.current.version
    info = rec.info()
    assert info.state == "closed" and info.closed_at is not None and info.errno is None


async def test_refused_upstream_resets_the_client(engine: bool) -> None:
    dst = SockAddr("127.0.0.1", free_port())
    async with running_proxy(dst, engine=engine) as h:
        client = await h.connect()
        with trio.fail_after(5), pytest.raises(trio.BrokenResourceError) as info:
            await client.receive_some(10)
        assert isinstance(info.value.__cause__, ConnectionResetError)
    rec = h.table.recent[0]
    assert rec.close_reason == "connect_refused"
    assert rec.dst_errno == "ECONNREFUSED"
    assert not rec.dst_opened


async def test_upstream_reset_mid_stream_resets_the_client(engine: bool) -> None:
    import socket
    import struct

    async def reset_after_first_bytes(stream: trio.SocketStream) -> None:
        await stream.receive_some(10)
        await stream.send_all(b"partial answer")
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        stream.socket.close()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    dst = SockAddr.from_sockname(listeners[0].socket.getsockname())
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, reset_after_first_bytes, listeners)
        async with running_proxy(dst, engine=engine) as h:
            client = await h.connect()
            # Not a prefix of any request line ("\n" without "\r"), so detection decides on this segment.
            await client.send_all(b"hello\n")
            received = b""
            with trio.fail_after(5), pytest.raises(trio.BrokenResourceError):
                while chunk := await client.receive_some(100):
                    received += chunk
            # The bytes sent before the reset arrive; the end is a reset, never a clean EOF.
            assert received in (b"", b"partial answer")
            with trio.fail_after(5):
                while h.table.live:
                    await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    rec = h.table.recent[0]
    assert rec.close_reason == "upstream_reset"
    assert rec.dst_errno == "ECONNRESET"


async def test_idle_connection_is_closed_with_a_fin(mock_clock: trio.testing.MockClock, engine: bool) -> None:
    mock_clock.autojump_threshold = 0.02  # real sockets: let the kernel deliver before virtual time jumps
    policy = Policy(timeouts=Timeouts(idle=Duration.parse("10s")))
    async with echo_server() as upstream, running_proxy(upstream, policy, engine=engine) as h:
        client = await h.connect()
        # Decided as opaque on this segment, so the idle clock, not the detect timeout, is what this measures.
        await client.send_all(b"ping\n")
        assert await client.receive_some(10) == b"ping\n"
        start = trio.current_time()
        with trio.fail_after(60):
            assert await client.receive_some(10) == b""  # FIN, not a reset
        waited = trio.current_time() - start
    assert 10 <= waited <= 10 + 2.5 + 0.5
    assert h.table.recent[0].close_reason == "idle_timeout"


async def test_metrics_carry_linkerd_tcp_families_with_labels(engine: bool) -> None:
    async with echo_server() as upstream, running_proxy(upstream, engine=engine) as h:
        metrics = ProxyMetrics(h.table, h.store, ProxyState(started_at=0.0), "test")
        client = await h.connect()
        await client.send_all(b"GET / HTTP/1.1\r\n")
        assert await client.receive_some(20) == b"GET / HTTP/1.1\r\n"
        text = metrics.render().decode()
        target = f'target_addr="{upstream}",target_ip="127.0.0.1",target_port="{upstream.port}",tls="no_identity"'
        out = 'client_id="",direction="outbound"'  # labels sort by name: the empty peer ids come first
        assert f'tcp_open_connections{{{out},peer="src",server_id="",{target}}} 1.0' in text
        assert f'tcp_open_connections{{{out},peer="dst",server_id="",{target}}} 1.0' in text
        assert f'tcp_read_bytes_total{{{out},peer="src",server_id="",{target}}} 16.0' in text
        assert 'tcp_detect_http_results_total{direction="outbound",result="http/1"} 1.0' in text
        assert 'tcp_detect_http_duration_seconds_count{direction="outbound"} 1.0' in text
        assert 'tcp_detect_http_duration_seconds_bucket{direction="outbound",le="+Inf"} 1.0' in text
        await client.send_eof()
        assert await _read_all(client) == b""
        await client.aclose()
        with trio.fail_after(5):
            while h.table.live:
                await trio.sleep(0.01)
        text = metrics.render().decode()
    for peer in ("src", "dst"):
        assert f'tcp_open_total{{{out},peer="{peer}",server_id="",{target}}} 1.0' in text
        assert f'tcp_close_total{{{out},errno="",peer="{peer}",server_id="",{target}}} 1.0' in text
        assert f'tcp_open_connections{{{out},peer="{peer}",server_id="",{target}}} 0.0' in text
        assert f'tcp_read_bytes_total{{{out},peer="{peer}",server_id="",{target}}} 16.0' in text
        assert f'tcp_write_bytes_total{{{out},peer="{peer}",server_id="",{target}}} 16.0' in text
    assert 'triomesh_connections_closed_total{direction="outbound",reason="completed"} 1.0' in text
    assert 'triomesh_policy_reloads_total{result="failure"} 0.0' in text
    assert "process_resident_memory_bytes" in text
