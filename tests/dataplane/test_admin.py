"""The admin endpoint and the proxy's lifecycle, in process: readiness, documents, errors, reload, drain."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
import pytest
import trio

from dataplane.admin.schema import ConfigReport, ConnectionsReport, StatusReport
from dataplane.app import Proxy
from dataplane.net.addr import SockAddr
from dataplane.settings import ProxySettings


def _settings(policy: Path | None = None, drain: float = 5.0) -> ProxySettings:
    return ProxySettings(
        policy_path=str(policy) if policy else None,
        admin=SockAddr("127.0.0.1", 0),
        outbound_port=0,
        inbound_port=0,
        inbound_mode="redirect",
        mark=0,
        ipv6="auto",
        drain_timeout=drain,
        log_level="info",
    )


@asynccontextmanager
async def running(settings: ProxySettings) -> AsyncIterator[tuple[Proxy, SockAddr, trio.Event]]:
    proxy = Proxy(settings)
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        admin = await nursery.start(proxy.serve, shutdown)
        yield proxy, admin, shutdown
        shutdown.set()


async def http(addr: SockAddr, request: bytes) -> tuple[int, dict[str, str], bytes]:
    stream = await trio.open_tcp_stream(addr.ip, addr.port)
    async with stream:
        await stream.send_all(request)
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


async def get(addr: SockAddr, path: str) -> tuple[int, bytes]:
    status, _, body = await http(addr, f"GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n".encode())
    return status, body


async def test_endpoints() -> None:
    async with running(_settings()) as (proxy, admin, _):
        assert await get(admin, "/live") == (200, b"live\n")
        assert await get(admin, "/ready") == (200, b"ready\n")
        status, body = await get(admin, "/status")
        report = msgspec.json.decode(body, type=StatusReport)
        assert status == 200 and report.ready and not report.draining
        assert report.policy_source == "embedded-default" and report.policy_generation == 1
        assert {li.name for li in report.listeners} >= {"outbound", "inbound"}
        status, body = await get(admin, "/connections")
        conns = msgspec.json.decode(body, type=ConnectionsReport)
        assert status == 200 and conns.open == [] and conns.opened_total == 0
        status, body = await get(admin, "/config")
        config = msgspec.json.decode(body, type=ConfigReport)
        assert config.policy_version == proxy.store.current.version
        assert msgspec.json.decode(config.policy)["name"] == "embedded-default"
        status, headers, body = await http(admin, b"GET /metrics HTTP/1.1\r\n\r\n")
        assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert b"triomesh_ready 1.0" in body
        status, headers, body = await http(admin, b"HEAD /live HTTP/1.1\r\n\r\n")
        assert (status, headers["Content-Length"], body) == (200, "5", b"")


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /nope HTTP/1.1\r\n\r\n", 404),
        (b"POST /ready HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405),
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n", 431),
    ],
)
async def test_bad_requests(request_bytes: bytes, status: int) -> None:
    async with running(_settings()) as (_, admin, _):
        got, headers, _ = await http(admin, request_bytes)
        assert got == status
        if status == 405:
            assert headers["Allow"] == "GET, HEAD"


async def test_client_connecting_straight_to_the_outbound_port_is_refused() -> None:
    """No iptables redirect happened, so there is no original destination to go to: refused, recorded."""
    async with running(_settings()) as (proxy, admin, _):
        out = next(lst for name, _, lst in proxy.listeners if name == "outbound")
        port = out.socket.getsockname()[1]
        client = await trio.open_tcp_stream("127.0.0.1", port)
        with trio.fail_after(5), pytest.raises(trio.BrokenResourceError):
            await client.receive_some(10)
        _, body = await get(admin, "/connections")
        recent = msgspec.json.decode(body, type=ConnectionsReport).recent
    assert recent[0].close_reason in ("no_original_dst", "redirect_loop")


async def test_shutdown_turns_unready_and_closes_listeners() -> None:
    proxy = Proxy(_settings())
    port = next(lst for name, _, lst in proxy.listeners if name == "outbound").socket.getsockname()[1]
    shutdown = trio.Event()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(proxy.serve, shutdown)
            shutdown.set()
    assert not proxy.state.ready
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", port)


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


async def _status(admin: SockAddr) -> StatusReport:
    _, body = await get(admin, "/status")
    return msgspec.json.decode(body, type=StatusReport)


async def test_policy_reload_applies_valid_and_keeps_last_good(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    _write(path, "version: 1\nname: first\n")
    async with running(_settings(path)) as (_, admin, _):
        first = await _status(admin)
        assert (first.policy_name, first.policy_generation) == ("first", 1)
        _write(path, "version: 1\nname: second\ntimeouts:\n  idle: 30s\n")
        with trio.fail_after(1.0):  # the promise: a valid change applies within 1 s
            while (await _status(admin)).policy_generation != 2:
                await trio.sleep(0.05)
        _write(path, "version: 1\nname: third\ntimeouts:\n  idle: 0s\n  bogus: 1\n")
        with trio.fail_after(2.0):
            while (report := await _status(admin)).last_reload_error is None:
                await trio.sleep(0.05)
        assert (report.policy_name, report.policy_generation) == ("second", 2)
        paths = {p.path for p in report.last_reload_error.problems}
        assert {"timeouts.idle", "timeouts.bogus"} <= paths
        _, body = await get(admin, "/metrics")
        assert b'triomesh_policy_reloads_total{result="failure"} 1.0' in body
        assert b'triomesh_policy_reloads_total{result="success"} 1.0' in body
        assert b"triomesh_policy_generation 2.0" in body


def test_invalid_policy_at_start_is_fatal(tmp_path: Path) -> None:
    from dataplane.app import main

    path = tmp_path / "policy.json"
    path.write_text('{"version": 1, "inbound": {"ports": [{"port": 0}]}}')
    assert main(["--policy", str(path), "--mark", "0", "--admin", "127.0.0.1:0"]) == 1
