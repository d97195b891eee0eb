"""Static forward listeners (``--forward LISTEN=UPSTREAM``): the flag, and a loopback echo through one."""

from __future__ import annotations

import pytest
import trio

from dataplane.app import Proxy
from dataplane.net.addr import SockAddr
from dataplane.settings import Forward, ProxySettings, parse_args
from tests.dataplane.proxy_harness import echo_server, free_port


def _flags(*forwards: str) -> ProxySettings:
    """Real flags on free loopback ports, so nothing depends on 15000/15001/15006 being free."""
    argv = ["--admin", f"127.0.0.1:{free_port()}", "--outbound-port", str(free_port())]
    argv += ["--inbound-port", str(free_port()), "--mark", "0", "--ipv6", "off"]
    for forward in forwards:
        argv += ["--forward", forward]
    return parse_args(argv)


async def _wait_closed(proxy: Proxy) -> None:
    with trio.fail_after(5):
        while proxy.table.live:
            await trio.sleep(0.01)


def test_forward_flag_values() -> None:
    s = parse_args(["--forward", "127.0.0.1:8000=127.0.0.1:8080", "--forward", "[::1]:8000=[::1]:9090"])
    assert s.forwards == (
        Forward(SockAddr("127.0.0.1", 8000), SockAddr("127.0.0.1", 8080)),
        Forward(SockAddr("::1", 8000), SockAddr("::1", 9090)),
    )
    assert [f.name for f in s.forwards] == ["forward-8000", "forward-ipv6-8000"]
    assert parse_args([]).forwards == ()


@pytest.mark.parametrize(
    "value",
    [
        "127.0.0.1:8000",  # no upstream
        "127.0.0.1:8000=",  # empty upstream
        "=127.0.0.1:8080",  # empty listener
        "localhost:8000=127.0.0.1:8080",  # not an IP address
        "127.0.0.1:0=127.0.0.1:8080",  # port 0
        "127.0.0.1:8000=127.0.0.1:99999",  # port out of range
        "::1:8000=127.0.0.1:8080",  # IPv6 without brackets
        "127.0.0.1:8000=127.0.0.1:8000",  # itself
        "127.0.0.1:15001=127.0.0.1:8080",  # the outbound listener's port
    ],
)
def test_bad_forward_exits_2_naming_the_flag(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args(["--forward", value])
    assert info.value.code == 2
    assert "--forward" in capsys.readouterr().err


def test_the_same_forward_listener_twice_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args(["--forward", "127.0.0.1:8000=127.0.0.1:1", "--forward", "127.0.0.1:8000=127.0.0.1:2"])
    assert info.value.code == 2
    assert "--forward: 127.0.0.1:8000 is given twice" in capsys.readouterr().err


async def test_echo_through_a_forward_listener() -> None:
    async with echo_server() as upstream:
        port = free_port()
        settings = _flags(f"127.0.0.1:{port}={upstream}")
        proxy = Proxy(settings)
        assert [li.name for li in proxy.view.listeners][-1] == f"forward-{port}"
        shutdown = trio.Event()
        async with trio.open_nursery() as nursery:
            await nursery.start(proxy.serve, shutdown)
            client = await trio.open_tcp_stream("127.0.0.1", port)
            await client.send_all(b"ping " * 20_000)
            await client.send_eof()
            received = b""
            with trio.fail_after(5):
                while chunk := await client.receive_some(65536):
                    received += chunk
            await client.aclose()
            await _wait_closed(proxy)
            shutdown.set()
    assert received == b"ping " * 20_000
    rec = proxy.table.recent[0]
    assert (rec.direction, rec.close_reason) == ("outbound", "completed")
    assert rec.original_dst == rec.upstream == upstream
    assert rec.local == SockAddr("127.0.0.1", port)
    assert (rec.up.sent, rec.down.sent) == (100_000, 100_000)


async def test_a_forward_into_another_forward_listener_is_a_loop() -> None:
    first, second = free_port(), free_port()
    settings = _flags(f"127.0.0.1:{first}=127.0.0.1:{second}", f"127.0.0.1:{second}=127.0.0.1:{first}")
    proxy = Proxy(settings)
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.serve, shutdown)
        client = await trio.open_tcp_stream("127.0.0.1", first)
        with trio.fail_after(5), pytest.raises(trio.BrokenResourceError):
            await client.receive_some(10)
        await client.aclose()
        await _wait_closed(proxy)
        shutdown.set()
    assert proxy.table.recent[0].close_reason == "redirect_loop"
