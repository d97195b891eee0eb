from __future__ import annotations

import socket
import struct
from functools import partial

import pytest
import trio

from ctl.lab.demo_app import format_sockaddr, main, serve
from ctl.lab.talk import http_exchange, http_get, talk


def _port(bound: list[str], host: str) -> int:
    (address,) = [address for address in bound if address.startswith(f"{host}:")]
    return int(address.rpartition(":")[2])


def test_format_sockaddr() -> None:
    assert format_sockaddr(("198.18.7.11", 8080)) == "198.18.7.11:8080"
    assert format_sockaddr(("fd00::1", 8080, 0, 0)) == "[fd00::1]:8080"


async def test_greets_with_name_and_the_peer_it_sees_then_echoes(nursery: trio.Nursery) -> None:
    port = _port(await nursery.start(partial(serve, "b", 0)), "0.0.0.0")
    with trio.fail_after(5):
        lines = await talk(None, "127.0.0.1", port, ["ping from a", "second"])
    greeting = lines[0]
    assert greeting.startswith(f"hello from b (127.0.0.1:{port}); you are 127.0.0.1:")
    assert lines[1:] == ["b echoes: ping from a", "b echoes: second"]


async def test_http_requests_on_one_connection_are_answered_with_what_reached_the_app(nursery: trio.Nursery) -> None:
    bound = await nursery.start(partial(serve, "b", 0, 0))
    http_port = _port(bound[len(bound) // 2 :], "0.0.0.0")  # the HTTP listeners come after the line protocol's
    with trio.fail_after(5):
        replies = await http_get(None, "127.0.0.1", http_port, ["/one", "/two?x=1"])
    assert replies == [
        ("HTTP/1.1 200 OK", "b answers GET /one (no proxy fields)"),
        ("HTTP/1.1 200 OK", "b answers GET /two?x=1 (no proxy fields)"),
    ]


async def test_ipv6_peer_is_bracketed(nursery: trio.Nursery) -> None:
    if not socket.has_ipv6:
        pytest.fail("this machine has IPv6; the lab depends on it")
    port = _port(await nursery.start(partial(serve, "c", 0)), "[::]")
    with trio.fail_after(5):
        (greeting,) = await talk(None, "::1", port, [])
    assert greeting.startswith(f"hello from c ([::1]:{port}); you are [::1]:")


def test_port_in_use_is_one_line_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--name", "a", "--port", str(port)]) == 1
    assert capsys.readouterr().err == f"demo_app: cannot listen on port {port}: Address already in use\n"


def test_bad_port_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--name", "a", "--port", "70000"])
    assert exited.value.code == 2
    assert "argument --port" in capsys.readouterr().err


async def test_talk_reports_a_reset_mid_exchange_as_an_os_error(nursery: trio.Nursery) -> None:
    async def reset_at_once(stream: trio.SocketStream) -> None:
        # SO_LINGER 0: close() sends RST instead of FIN, as a proxy dropping a connection would.
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()

    listeners = await nursery.start(partial(trio.serve_tcp, reset_at_once, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    with trio.fail_after(5), pytest.raises(ConnectionResetError):
        await talk(None, "127.0.0.1", port, ["ping"])


async def _http_port(nursery: trio.Nursery) -> int:
    bound = await nursery.start(partial(serve, "b", 0, 0))
    return _port(bound[len(bound) // 2 :], "0.0.0.0")


async def test_per_request_delay_and_status(nursery: trio.Nursery, autojump_clock: trio.abc.Clock) -> None:
    port = await _http_port(nursery)
    with trio.fail_after(5):
        started = trio.current_time()
        (delayed,) = await http_get(None, "127.0.0.1", port, ["/delay?ms=250"])
        assert trio.current_time() - started >= 0.25
        replies = await http_get(None, "127.0.0.1", port, ["/status?code=503", "/status?code=99", "/delay"])
    assert delayed == ("HTTP/1.1 200 OK", "b answers GET /delay?ms=250 (no proxy fields)")
    assert replies == [
        ("HTTP/1.1 503 Service Unavailable", "b answers GET /status?code=503 (no proxy fields)"),
        ("HTTP/1.1 400 Bad Request", "b: /status: invalid status '99': 200 to 599"),
        ("HTTP/1.1 400 Bad Request", "b: /delay: missing query parameter 'ms'"),
    ]


async def test_a_fault_set_on_one_connection_applies_to_every_later_request(nursery: trio.Nursery) -> None:
    port = await _http_port(nursery)
    with trio.fail_after(5):
        (set_503,) = await http_exchange(None, "127.0.0.1", port, [("POST", "/_lab/fail?mode=503")])
        failing = await http_get(None, "127.0.0.1", port, ["/one"])
        (shown,) = await http_get(None, "127.0.0.1", port, ["/_lab/faults"])
        await http_exchange(None, "127.0.0.1", port, [("POST", "/_lab/fail?mode=off")])
        working = await http_get(None, "127.0.0.1", port, ["/two"])
    assert set_503 == ("HTTP/1.1 200 OK", "b: fail=503 delay_ms=0")
    assert failing == [("HTTP/1.1 503 Service Unavailable", "b fails with 503 (lab fault)")]
    assert shown == ("HTTP/1.1 200 OK", "b: fail=503 delay_ms=0")
    assert working == [("HTTP/1.1 200 OK", "b answers GET /two (no proxy fields)")]


async def test_reset_and_hang_modes(nursery: trio.Nursery, autojump_clock: trio.abc.Clock) -> None:
    port = await _http_port(nursery)
    with trio.fail_after(5):
        await http_exchange(None, "127.0.0.1", port, [("POST", "/_lab/fail?mode=reset")])
        with pytest.raises(ConnectionResetError):
            await http_get(None, "127.0.0.1", port, ["/reset"])
        await http_exchange(None, "127.0.0.1", port, [("POST", "/_lab/fail?mode=hang"), ("POST", "/_lab/delay?ms=5")])
    with trio.move_on_after(20) as waited:  # virtual time: the app never answers
        await http_get(None, "127.0.0.1", port, ["/hang"])
    assert waited.cancelled_caught


@pytest.mark.parametrize(
    ("method", "path", "answer"),
    [
        ("POST", "/_lab/fail?mode=sometimes", "HTTP/1.1 400 Bad Request"),
        ("POST", "/_lab/delay?ms=soon", "HTTP/1.1 400 Bad Request"),
        ("GET", "/_lab/fail?mode=503", "HTTP/1.1 405 Method Not Allowed"),
        ("POST", "/_lab/nothing", "HTTP/1.1 404 Not Found"),
    ],
)
async def test_bad_control_requests_change_nothing(nursery: trio.Nursery, method: str, path: str, answer: str) -> None:
    port = await _http_port(nursery)
    with trio.fail_after(5):
        ((status, body),) = await http_exchange(None, "127.0.0.1", port, [(method, path)])
        (shown,) = await http_get(None, "127.0.0.1", port, ["/_lab/faults"])
    assert status == answer, body
    assert shown[1] == "b: fail=off delay_ms=0"
