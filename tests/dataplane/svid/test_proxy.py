"""``mesh-proxy --identity`` in process, over real loopback sockets and in real time (OpenSSL reads the machine's
clock): the flag, readiness, /status and /metrics, and rotation seen by real TLS clients. Every wait is on an
event, bounded by fail_after."""

from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path

import msgspec
import pytest
import trio

from dataplane.admin.schema import StatusReport
from dataplane.settings import ProxySettings, parse_args
from dataplane.svid.store import IdentityStore
from dataplane.tls.handshake import tls_accept, tls_connect
from dataplane.tls.openssl import TLSContext, client_context
from dataplane.tls.stream import TLSStream
from tests.dataplane.svid.sets import IdentityDir, applied
from tests.dataplane.test_admin import _settings, get, running
from tests.dataplane.tls.mesh import MESH, identity_of, loopback_listener
from tests.identity.pki import BACKEND, FRONTEND, Pki

APPLY_WITHIN = 2.0  # seconds, real time: the brief's bound for a change to reach new handshakes


def with_identity(directory: IdentityDir) -> ProxySettings:
    return dataclasses.replace(_settings(), identity_dir=str(directory.path))


def metric(text: bytes, name: str) -> float:
    [line] = [line for line in text.decode().splitlines() if line.split(" ")[0] == name]
    return float(line.split(" ")[1])


def test_the_identity_flag() -> None:
    assert parse_args([]).identity_dir is None
    assert parse_args(["--identity", "/var/run/triomesh/identity"]).identity_dir == "/var/run/triomesh/identity"


def test_an_empty_identity_flag_exits_2_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(["--identity", ""])
    assert exited.value.code == 2
    assert "argument --identity: must be a directory path" in capsys.readouterr().err


async def test_without_identity_nothing_changes() -> None:
    async with running(_settings()) as (proxy, admin, _):
        assert proxy.runtime.identity is None
        assert await get(admin, "/ready") == (200, b"ready\n")
        status = msgspec.json.decode((await get(admin, "/status"))[1], type=StatusReport)
        assert status.identity is None
        _, metrics = await get(admin, "/metrics")
        assert b"identity" not in metrics


async def test_a_valid_identity_is_ready_and_shown_in_status_and_metrics(directory: IdentityDir) -> None:
    svid = directory.publish()
    async with running(with_identity(directory)) as (proxy, admin, _):
        identity = proxy.runtime.identity
        assert identity is not None and identity.current is not None
        assert identity.current.server.server_side and identity.current.identity.serial == svid.cert.serial
        assert await get(admin, "/ready") == (200, b"ready\n")
        status = msgspec.json.decode((await get(admin, "/status"))[1], type=StatusReport)
        info = status.identity
        assert status.ready and info is not None
        assert (info.directory, info.valid, info.problem, info.spiffe_id) == (str(directory.path), True, None, BACKEND)
        assert (info.serial, info.not_after, info.generation) == (
            f"{svid.cert.serial:x}",
            svid.cert.not_after.timestamp(),
            1,
        )
        assert info.last_reload_error is None
        _, metrics = await get(admin, "/metrics")
        assert metric(metrics, "identity_cert_expiration_timestamp_seconds") == svid.cert.not_after.timestamp()
        assert metric(metrics, "triomesh_ready") == 1.0
        assert f'triomesh_identity_info{{serial="{svid.cert.serial:x}",spiffe_id="{BACKEND}"}} 1.0' in metrics.decode()


async def test_a_bad_directory_at_start_starts_not_ready_until_a_valid_identity_arrives(
    directory: IdentityDir, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="dataplane.svid.watch")
    directory.path.mkdir()
    async with running(with_identity(directory)) as (proxy, admin, _):
        missing = directory.path / "cert.pem"
        assert await get(admin, "/ready") == (503, f"not ready: no valid identity ({missing}: no such file)\n".encode())
        assert [r.getMessage() for r in caplog.records] == [
            f"identity from {directory.path} refused: {missing}: no such file; "
            "not ready until a valid identity is written there"
        ]
        status = msgspec.json.decode((await get(admin, "/status"))[1], type=StatusReport)
        info = status.identity
        assert not status.ready and info is not None
        assert (info.valid, info.problem, info.spiffe_id, info.generation) == (
            False,
            f"{missing}: no such file",
            None,
            0,
        )
        assert info.last_reload_error is not None and info.last_reload_error.source == str(missing)
        _, metrics = await get(admin, "/metrics")
        assert metric(metrics, "triomesh_ready") == 0.0
        assert metric(metrics, "triomesh_identity_valid") == 0.0
        assert b"identity_cert_expiration_timestamp_seconds" not in metrics

        directory.publish()
        assert proxy.identity is not None
        assert await applied(proxy.identity, 1) <= APPLY_WITHIN
        assert await get(admin, "/ready") == (200, b"ready\n")


async def serve_with_current_identity(
    listener: trio.SocketListener,
    store: IdentityStore,
    *,
    task_status: trio.TaskStatus[list[trio.SocketListener]],
) -> None:
    """A small mesh server: each accepted connection handshakes with the store's context of that moment, then
    echoes (upper-cased) until the client closes."""

    async def handle(transport: trio.SocketStream) -> None:
        assert store.current is not None
        async with await tls_accept(transport, store.current.server) as stream:
            while data := await stream.receive_some():
                await stream.send_all(data.upper())

    await trio.serve_listeners(handle, [listener], task_status=task_status)


async def dial(port: int, client: TLSContext) -> TLSStream:
    return await tls_connect(await trio.open_tcp_stream("127.0.0.1", port), client)


async def echo(stream: TLSStream, data: bytes) -> bytes:
    await stream.send_all(data)
    return await stream.receive_some()


async def test_rotation_break_and_fix_seen_by_real_tls_clients(
    directory: IdentityDir, pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="dataplane.svid.watch")
    client = client_context(identity_of(pki, tmp_path / "frontend", FRONTEND), protocols=MESH)
    first = directory.publish()
    listener, port = await loopback_listener()
    with trio.fail_after(30):
        async with running(with_identity(directory)) as (proxy, admin, _), trio.open_nursery() as nursery:
            store = proxy.identity
            assert store is not None
            await nursery.start(functools.partial(serve_with_current_identity, listener, store))
            old = await dial(port, client)
            assert await echo(old, b"before") == b"BEFORE"

            second = directory.publish()
            assert await applied(store, 2) <= APPLY_WITHIN
            async with await dial(port, client) as new:
                assert new.peer_certificate.serial == second.cert.serial
                assert await echo(new, b"after") == b"AFTER"
            assert old.peer_certificate.serial == first.cert.serial
            assert await echo(old, b"still open") == b"STILL OPEN"

            directory.publish_mismatched()
            with trio.fail_after(10):
                await store.wait_for_refusal(0)
            async with await dial(port, client) as kept:
                assert kept.peer_certificate.serial == second.cert.serial
                assert await echo(kept, b"kept") == b"KEPT"
            assert await get(admin, "/ready") == (200, b"ready\n")
            status = msgspec.json.decode((await get(admin, "/status"))[1], type=StatusReport)
            assert status.identity is not None and status.identity.last_reload_error is not None
            assert status.identity.last_reload_error.source == str(directory.path / "key.pem")
            [line] = [r.getMessage() for r in caplog.records]
            assert f"{directory.path / 'key.pem'}: does not match the certificate" in line

            third = directory.publish()
            assert await applied(store, 3) <= APPLY_WITHIN
            async with await dial(port, client) as fixed:
                assert fixed.peer_certificate.serial == third.cert.serial
            assert await echo(old, b"through it all") == b"THROUGH IT ALL"
            await old.aclose()
            nursery.cancel_scope.cancel()
