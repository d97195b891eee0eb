from __future__ import annotations

import socket

import pytest
import trio

from ctl.client import (
    AdminAddress,
    AdminAnswerError,
    AdminClient,
    AdminUnreachableError,
    parse_admin_url,
)
from tests.ctl.admin_standin import Answer, Fault, StandIn, healthy_answers, sample_connections, sample_status


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("http://127.0.0.1:15000", AdminAddress("127.0.0.1", 15000)),
        ("http://127.0.0.1:15000/", AdminAddress("127.0.0.1", 15000)),
        ("127.0.0.1:9", AdminAddress("127.0.0.1", 9)),
        ("http://[::1]:15000", AdminAddress("::1", 15000)),
        ("http://localhost", AdminAddress("localhost", 80)),
    ],
)
def test_parse_admin_url(text: str, address: AdminAddress) -> None:
    assert parse_admin_url(text) == address


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("https://127.0.0.1:15000", "only http://"),
        ("http://127.0.0.1:99999", "out of range"),
        ("http://127.0.0.1:port", "invalid admin URL"),
        ("http://:15000", "no host"),
        ("http://127.0.0.1:15000/status", "give only scheme, host and port"),
    ],
)
def test_parse_admin_url_rejects(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_admin_url(text)


def test_address_url_brackets_ipv6() -> None:
    assert AdminAddress("::1", 15000).url == "http://[::1]:15000"


async def _client_for(nursery: trio.Nursery, standin: StandIn, timeout: float = 5.0) -> AdminClient:
    port = await nursery.start(standin.serve)
    return AdminClient(AdminAddress("127.0.0.1", port), timeout=timeout)


async def test_documents_decode_into_schema_structs(nursery: trio.Nursery) -> None:
    standin = StandIn(healthy_answers())
    client = await _client_for(nursery, standin)
    assert await trio.to_thread.run_sync(client.status) == sample_status()
    assert await trio.to_thread.run_sync(client.connections) == sample_connections()
    assert await trio.to_thread.run_sync(client.ready) == (True, "ready")
    assert await trio.to_thread.run_sync(client.live)
    assert "tcp_open_total" in await trio.to_thread.run_sync(client.metrics)
    assert standin.requests[:2] == ["GET /status HTTP/1.1", "GET /connections HTTP/1.1"]


async def test_not_ready_is_an_answer_not_an_error(nursery: trio.Nursery) -> None:
    answers = {"/ready": Answer(503, b"not ready: listeners not bound\n", "text/plain")}
    client = await _client_for(nursery, StandIn(answers))
    assert await trio.to_thread.run_sync(client.ready) == (False, "not ready: listeners not bound")


async def test_non_json_answer_names_the_endpoint_and_path(nursery: trio.Nursery) -> None:
    answers = {"/status": Answer(200, b"<html>hello</html>", "text/html")}
    client = await _client_for(nursery, StandIn(answers))
    with pytest.raises(AdminAnswerError, match=r"answered GET /status with a document meshctl cannot read"):
        await trio.to_thread.run_sync(client.status)


async def test_document_missing_a_field_is_reported(nursery: trio.Nursery) -> None:
    answers = {"/connections": Answer(200, b'{"open": [], "recent": []}')}
    client = await _client_for(nursery, StandIn(answers))
    with pytest.raises(AdminAnswerError, match="opened_total"):
        await trio.to_thread.run_sync(client.connections)


async def test_http_error_status_is_reported_with_the_body(nursery: trio.Nursery) -> None:
    client = await _client_for(nursery, StandIn({}))
    with pytest.raises(AdminAnswerError, match=r"answered GET /status with HTTP 404 Not Found: not found"):
        await trio.to_thread.run_sync(client.status)


async def test_non_http_peer_is_reported(nursery: trio.Nursery) -> None:
    client = await _client_for(nursery, StandIn({}, Fault.NOT_HTTP))
    with pytest.raises(AdminAnswerError, match="did not answer GET /status with HTTP"):
        await trio.to_thread.run_sync(client.status)


async def test_silent_endpoint_times_out(nursery: trio.Nursery) -> None:
    client = await _client_for(nursery, StandIn({}, Fault.HANG), timeout=0.2)
    with pytest.raises(AdminUnreachableError, match=r"did not answer GET /status within 0.2s"):
        await trio.to_thread.run_sync(client.status)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_refused_connection_is_unreachable() -> None:
    client = AdminClient(AdminAddress("127.0.0.1", _closed_port()))
    with pytest.raises(AdminUnreachableError, match=r"cannot reach .*http://127.0.0.1:\d+: connection refused"):
        client.status()
