"""watch_identity on real identity directories, in virtual time: start, rotate, break, fix, expire.

The SVIDs come from ``identity.authority`` on the machine's clock (OpenSSL checks validity against it during
the handshakes here); the store's clock is that moment plus the virtual time elapsed, so expiry is reached
with autojump_clock instead of a real wait. Handshakes run over memory streams: no real I/O, so the virtual
clock only jumps when every task waits on it.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import msgspec
import pytest
import trio
import trio.testing
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dataplane.admin.documents import AdminView
from dataplane.admin.local import LocalAdmin
from dataplane.admin.schema import StatusReport
from dataplane.connections import ConnectionTable
from dataplane.svid.store import IdentityStore
from dataplane.svid.watch import watch_identity
from dataplane.telemetry.aggregate import merge_expositions
from dataplane.telemetry.identity_metrics import IdentityCollector
from dataplane.telemetry.metrics import ProxyState
from dataplane.tls.openssl import TLSContext, client_context
from dataplane.tls.stream import TLSStream
from policy.model import DEFAULT_POLICY
from policy.store import PolicyStore
from tests.dataplane.svid.sets import IdentityDir, applied
from tests.dataplane.tls.mesh import MESH, handshake_pair, identity_of
from tests.identity.pki import BACKEND, FRONTEND, Pki

# The brief's bound for a rotation to reach new handshakes.
APPLY_WITHIN = 2.0
LOGGER = "dataplane.svid.watch"


@pytest.fixture
def client(pki: Pki, tmp_path: Path) -> TLSContext:
    """A peer proxy's outbound context, to handshake with whatever the store serves."""
    return client_context(identity_of(pki, tmp_path / "frontend", FRONTEND), protocols=MESH)


async def start_watching(nursery: trio.Nursery, directory: IdentityDir) -> IdentityStore:
    clock = trio.lowlevel.current_clock()
    assert isinstance(clock, trio.testing.MockClock), "take autojump_clock in the test's own arguments"
    started, base = trio.current_time(), directory.pki.now
    store = IdentityStore(directory.path, clock=lambda: base + timedelta(seconds=trio.current_time() - started))
    await nursery.start(watch_identity, store)
    return store


async def connect(store: IdentityStore, client: TLSContext) -> tuple[TLSStream, TLSStream]:
    """A new mesh connection to the proxy: (client, server) streams, the server on the store's current context."""
    assert store.current is not None
    left, right = trio.testing.memory_stream_pair()
    with trio.fail_after(10):
        return await handshake_pair(left, right, store.current.server, client)


async def exchange(pair: tuple[TLSStream, TLSStream]) -> None:
    client, server = pair
    await client.send_all(b"ping")
    assert await server.receive_some() == b"ping"
    await server.send_all(b"pong")
    assert await client.receive_some() == b"pong"


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno == level and record.name == LOGGER]


async def test_start_loads_the_identity_and_builds_both_contexts(
    directory: IdentityDir, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, autojump_clock: object
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    svid = directory.publish()
    store = await start_watching(nursery, directory)
    current = store.current
    assert current is not None
    assert (current.identity.serial, str(current.identity.spiffe_id)) == (svid.cert.serial, BACKEND)
    assert current.server.server_side and not current.client.server_side
    assert current.server.identity is current.identity is current.client.identity
    assert (current.generation, store.reloads_succeeded, store.reloads_failed) == (1, 1, 0)
    assert store.problem() is None and store.last_error is None
    assert messages(caplog, logging.INFO) == [
        f"identity {BACKEND} loaded from {directory.path}: serial {svid.cert.serial:x}, "
        f"valid until {svid.cert.not_after.isoformat()}"
    ]


async def test_rotation_reaches_new_handshakes_within_2s_and_open_streams_keep_working(
    directory: IdentityDir, client: TLSContext, nursery: trio.Nursery, autojump_clock: object
) -> None:
    first = directory.publish()
    store = await start_watching(nursery, directory)
    old = await connect(store, client)
    await exchange(old)

    second = directory.publish()
    assert await applied(store, 2) <= APPLY_WITHIN
    new = await connect(store, client)

    for pair in (old, new):
        await exchange(pair)
    assert old[0].peer_certificate.serial == first.cert.serial
    assert new[0].peer_certificate.serial == second.cert.serial
    assert (store.reloads_succeeded, store.reloads_failed) == (2, 0)
    for stream in (*old, *new):
        await stream.aclose()


async def test_the_same_files_rewritten_change_nothing(
    directory: IdentityDir, nursery: trio.Nursery, autojump_clock: object
) -> None:
    directory.publish()
    store = await start_watching(nursery, directory)
    current = store.current
    for name in ("cert.pem", "key.pem", "bundle.pem"):
        path = directory.path / name
        path.resolve().write_bytes(path.read_bytes())  # rewritten in place, same bytes
    await trio.sleep(5)
    assert store.current is current and (store.reloads_succeeded, store.reloads_failed) == (1, 0)


async def test_a_broken_set_is_refused_once_the_last_good_stays_and_a_fix_applies(
    directory: IdentityDir,
    client: TLSContext,
    nursery: trio.Nursery,
    caplog: pytest.LogCaptureFixture,
    autojump_clock: object,
) -> None:
    good = directory.publish()
    store = await start_watching(nursery, directory)
    caplog.set_level(logging.INFO, logger=LOGGER)
    current = store.current

    directory.publish_broken_cert()
    await trio.sleep(30)  # many polls and re-checks: still one refusal
    assert store.current is current
    assert (store.reloads_succeeded, store.reloads_failed) == (1, 1)
    error = store.last_error
    assert error is not None and error.path == directory.path / "cert.pem"
    assert "malformed PEM certificate" in error.problem
    assert store.problem() is None  # the last good identity is still valid: the proxy stays ready
    assert messages(caplog, logging.WARNING) == [
        f"identity reload from {directory.path} refused: {directory.path / 'cert.pem'}: {error.problem}; "
        f"keeping {BACKEND} serial {good.cert.serial:x}"
    ]
    pair = await connect(store, client)
    assert pair[0].peer_certificate.serial == good.cert.serial
    await exchange(pair)

    fixed = directory.publish()
    assert await applied(store, 2) <= APPLY_WITHIN
    assert store.last_error is None and (store.reloads_succeeded, store.reloads_failed) == (2, 1)
    new = await connect(store, client)
    assert new[0].peer_certificate.serial == fixed.cert.serial
    await exchange(pair)  # the connection made before the fix is untouched
    for stream in (*pair, *new):
        await stream.aclose()


async def test_a_key_that_does_not_match_the_certificate_is_refused(
    directory: IdentityDir, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, autojump_clock: object
) -> None:
    directory.publish()
    store = await start_watching(nursery, directory)
    caplog.set_level(logging.WARNING, logger=LOGGER)
    current = store.current
    directory.publish_mismatched()
    await trio.sleep(APPLY_WITHIN)
    assert store.current is current and store.reloads_failed == 1
    error = store.last_error
    assert error is not None and error.path == directory.path / "key.pem"
    assert error.problem.startswith(f"does not match the certificate in {directory.path / 'cert.pem'}")
    [line] = messages(caplog, logging.WARNING)
    assert f"{directory.path / 'key.pem'}: does not match the certificate" in line


async def test_a_bad_directory_at_start_leaves_no_identity_until_a_valid_one_is_written(
    directory: IdentityDir, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, autojump_clock: object
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    store = await start_watching(nursery, directory)  # the directory does not even exist yet
    missing = directory.path / "cert.pem"
    assert store.current is None
    assert store.problem() == f"{missing}: no such file"
    assert messages(caplog, logging.ERROR) == [
        f"identity from {directory.path} refused: {missing}: no such file; "
        "not ready until a valid identity is written there"
    ]
    await trio.sleep(20)
    assert store.reloads_failed == 1  # the same missing file is not reported again

    directory.publish()
    assert await applied(store, 1) <= APPLY_WITHIN
    assert store.problem() is None and store.last_error is None


async def test_expiry_while_loaded_makes_the_proxy_not_ready_until_a_new_identity(
    directory: IdentityDir, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, autojump_clock: object
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    svid = directory.publish(ttl=timedelta(seconds=60))
    store = await start_watching(nursery, directory)
    state = ProxyState(started_at=0.0, ready=True, identity_problem=store.problem)
    view = AdminView(
        table=ConnectionTable(),
        store=PolicyStore(DEFAULT_POLICY, source="embedded-default"),
        state=state,
        version="test",
        listeners=[],
        identity=store,
    )
    admin = LocalAdmin(view, lambda: b"")
    assert await admin.answer("/ready") == (200, "text/plain; charset=utf-8", b"ready\n")

    await trio.sleep(61)
    why = f"identity expired at {svid.cert.not_after.isoformat()}"
    assert state.readiness() == (False, f"no valid identity ({why})")
    assert await admin.answer("/ready") == (
        503,
        "text/plain; charset=utf-8",
        f"not ready: no valid identity ({why})\n".encode(),
    )
    status = await admin.answer("/status")
    assert status is not None
    report = msgspec.json.decode(status[2], type=StatusReport)
    assert not report.ready and report.identity is not None
    assert (report.identity.valid, report.identity.problem, report.identity.serial) == (
        False,
        why,
        f"{svid.cert.serial:x}",
    )
    await trio.sleep(30)
    assert [line for line in messages(caplog, logging.ERROR) if "expired" in line] == [
        f"identity {BACKEND} (serial {svid.cert.serial:x}) expired at {svid.cert.not_after.isoformat()}: "
        f"not ready until a new identity is written to {directory.path}"
    ]

    directory.publish(now=store.clock())
    assert await applied(store, 2) <= APPLY_WITHIN
    assert state.readiness() == (True, "")
    assert await admin.answer("/ready") == (200, "text/plain; charset=utf-8", b"ready\n")


async def test_a_not_yet_valid_identity_is_taken_once_it_becomes_valid(
    directory: IdentityDir, nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, autojump_clock: object
) -> None:
    """A CA whose clock runs ahead: refused at first, re-checked quietly, loaded when its notBefore passes."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    svid = directory.publish(now=directory.pki.now + timedelta(seconds=60))  # valid 40 s from now
    store = await start_watching(nursery, directory)
    assert store.current is None and store.reloads_failed == 1
    problem = store.problem()
    assert problem is not None and "not_yet_valid" in problem
    with trio.fail_after(60):
        await store.wait_for_generation(0)
    assert store.clock() >= svid.cert.not_before
    assert store.clock() - svid.cert.not_before <= timedelta(seconds=6)  # the 5 s re-check, plus a poll
    assert (store.reloads_succeeded, store.reloads_failed) == (1, 1)
    assert len(messages(caplog, logging.ERROR)) == 1


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def exposition(store: IdentityStore) -> str:
    registry = CollectorRegistry()
    registry.register(IdentityCollector(store.reading))
    return generate_latest(registry).decode()


def samples_of(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(store: IdentityStore) -> Samples:
    return samples_of(exposition(store))


async def test_metrics_show_expiry_reloads_and_the_spiffe_id(
    directory: IdentityDir, nursery: trio.Nursery, autojump_clock: object
) -> None:
    store = await start_watching(nursery, directory)
    assert scrape(store) == {
        ("triomesh_identity_reloads_total", (("result", "success"),)): 0.0,
        ("triomesh_identity_reloads_total", (("result", "failure"),)): 1.0,
        ("triomesh_identity_valid", ()): 0.0,
    }
    first = directory.publish()
    await applied(store, 1)
    directory.publish_mismatched()
    await trio.sleep(APPLY_WITHIN)
    samples = scrape(store)
    assert store.current is not None
    assert samples == {
        ("triomesh_identity_reloads_total", (("result", "success"),)): 1.0,
        ("triomesh_identity_reloads_total", (("result", "failure"),)): 2.0,
        ("triomesh_identity_valid", ()): 1.0,
        ("identity_cert_expiration_timestamp_seconds", ()): first.cert.not_after.timestamp(),
        ("triomesh_identity_info", (("serial", f"{first.cert.serial:x}"), ("spiffe_id", BACKEND))): 1.0,
        ("triomesh_identity_last_reload_success_timestamp_seconds", ()): store.current.loaded_at,
    }


async def test_worker_metrics_merge_to_the_worst_worker(
    directory: IdentityDir, tmp_path: Path, nursery: trio.Nursery, autojump_clock: object
) -> None:
    """With --workers each worker loads the identity; the merged gauges must not be summed."""
    older = directory.publish()
    first = await start_watching(nursery, directory)
    other = IdentityDir(directory.pki, tmp_path / "other")
    newer = other.publish(ttl=timedelta(hours=2))
    second = await start_watching(nursery, other)
    merged = samples_of(merge_expositions([exposition(first), exposition(second)]).decode())
    assert merged[("identity_cert_expiration_timestamp_seconds", ())] == older.cert.not_after.timestamp()
    assert newer.cert.not_after > older.cert.not_after
    assert merged[("triomesh_identity_valid", ())] == 1.0
    assert merged[("triomesh_identity_reloads_total", (("result", "success"),))] == 2.0
