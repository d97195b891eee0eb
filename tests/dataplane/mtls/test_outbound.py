"""reliability.md G4 34 on real processes: client -> ``mesh-proxy --forward`` (outbound, ``outbound.meshed``) ->
mesh mTLS -> ``mesh-proxy --inbound-forward`` (strict) -> application.

The outbound proxy requires ``sa/backend`` at the destination. One peer proxy has that identity; the other has a
valid SVID of the same trust domain for ``sa/other``. To the wrong one: HTTP clients get 503 with
``x-triomesh-error``, an opaque TCP client's connection is closed, the reason is ``peer_identity_mismatch`` and
the application sees nothing. To the right one, HTTP/1.1, h2 (prior knowledge) and opaque TCP all get through.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.dataplane.http2.hello import HELLO
from tests.dataplane.mtls.app import RecordingApp
from tests.dataplane.mtls.clients import curl, raw_exchange
from tests.dataplane.mtls.identities import OTHER, MeshCA
from tests.dataplane.mtls.proxy import MeshProxy, inbound_proxy, mesh_proxy
from tests.dataplane.mtls.refusals import refused
from tests.dataplane.proxy_harness import free_port
from tests.identity.pki import BACKEND, FRONTEND

H2 = ["--http2-prior-knowledge"]


@dataclass(frozen=True)
class Peer:
    """An inbound proxy and its two listeners (HTTP, opaque), both leading to the application."""

    proxy: MeshProxy
    http: int
    tcp: int


@dataclass(frozen=True)
class Mesh:
    outbound: MeshProxy
    right: Peer
    wrong: Peer
    listeners: dict[tuple[str, str], int]
    """(peer, kind) -> the outbound proxy's forward listener to it: ("right", "http"), ("wrong", "tcp"), ..."""

    def url(self, peer: str, path: str = "/secret") -> str:
        return f"http://127.0.0.1:{self.listeners[peer, 'http']}{path}"


def _outbound_policy(right: tuple[int, int], wrong: tuple[int, int]) -> str:
    meshed = ", ".join(str(port) for port in (*right, *wrong))
    return f"""\
name: g4-outbound
outbound:
  ports:
    - {{port: {right[1]}, protocol: opaque}}
    - {{port: {wrong[1]}, protocol: opaque}}
  meshed:
    - cidr: 127.0.0.1/32
      identity: "{BACKEND}"
      ports: [{meshed}]
"""


@pytest.fixture(scope="module")
def mesh(ca: MeshCA, workdir: Path, app_port: int) -> Iterator[Mesh]:
    ports = {(peer, kind): free_port() for peer in ("right", "wrong") for kind in ("http", "tcp")}
    listeners = {key: free_port() for key in ports}
    with (
        inbound_proxy(
            workdir / "right", ca.issue(BACKEND, workdir / "backend"), "strict", _of(ports, "right"), app_port
        ) as right,
        inbound_proxy(
            workdir / "wrong", ca.issue(OTHER, workdir / "other"), "strict", _of(ports, "wrong"), app_port
        ) as wrong,
        mesh_proxy(
            workdir / "outbound",
            identity=ca.issue(FRONTEND, workdir / "frontend-proxy"),
            policy=_outbound_policy(_of(ports, "right"), _of(ports, "wrong")),
            forwards=[f"127.0.0.1:{listeners[key]}=127.0.0.1:{ports[key]}" for key in ports],
        ) as outbound,
    ):
        yield Mesh(outbound, Peer(right, *_of(ports, "right")), Peer(wrong, *_of(ports, "wrong")), listeners)


def _of(ports: dict[tuple[str, str], int], peer: str) -> tuple[int, int]:
    """``peer``'s (HTTP, opaque) listener ports."""
    return ports[peer, "http"], ports[peer, "tcp"]


# --- the wrong server identity ---------------------------------------------------------------------------------


@pytest.mark.parametrize("flags", [[], H2], ids=["http1.1", "h2"])
async def test_http_to_the_wrong_identity_gets_503(mesh: Mesh, app: RecordingApp, flags: list[str]) -> None:
    answer = await curl(mesh.url("wrong"), *flags)
    assert answer.status == 503, answer
    why = answer.header("x-triomesh-error")
    assert why is not None and "peer_identity_mismatch" in why, answer
    assert app.received == b"", bytes(app.received)  # nothing of the request went out


async def test_opaque_tcp_to_the_wrong_identity_is_closed(mesh: Mesh, app: RecordingApp) -> None:
    # The wrong peer's own proxy may have connected to its application (see the next test): never a byte.
    async with refused(mesh.outbound, app, "peer_identity_mismatch", count=1, direction="outbound", app_connects=True):
        answer = await raw_exchange(mesh.listeners["wrong", "tcp"], b"opaque ping", half_close=True)
    assert answer == b""


@pytest.mark.parametrize("kind", ["http", "tcp"])
async def test_the_wrong_peer_never_completes_the_handshake(mesh: Mesh, app: RecordingApp, kind: str) -> None:
    """The outbound proxy refuses the wrong identity inside the handshake, before its own Finished: the wrong
    peer's proxy then fails its handshake too (the refusal's alert), never takes us for an authenticated client,
    and never connects to its application."""
    baseline = await mesh.wrong.proxy.last_id()
    if kind == "http":
        await curl(mesh.url("wrong"))
    else:
        await raw_exchange(mesh.listeners["wrong", "tcp"], b"opaque ping", half_close=True)
    records = await mesh.wrong.proxy.settled_since(baseline)
    assert records, "the wrong peer's proxy saw no connection"
    for rec in records:
        assert rec["close_reason"] == "tls_alert" and rec["client_id"] is None, f"{rec}"
    assert app.untouched, (app.connections, bytes(app.received))


# --- the right server identity ---------------------------------------------------------------------------------


async def test_http1_to_the_right_identity(mesh: Mesh, app: RecordingApp) -> None:
    outbound_baseline = await mesh.outbound.last_id()
    inbound_baseline = await mesh.right.proxy.last_id()
    answer = await curl(mesh.url("right"))
    assert (answer.exit_code, answer.status) == (0, 200), answer
    assert answer.body == b"app saw GET /secret HTTP/1.1\n"
    assert app.requests == ["GET /secret HTTP/1.1"]
    (outbound,) = await mesh.outbound.closed_since(outbound_baseline, 1)
    assert outbound["server_id"] == BACKEND and outbound["tls"] == "true", outbound
    report = await mesh.right.proxy.report()
    inbound = [rec for rec in report["open"] + report["recent"] if rec["id"] > inbound_baseline]
    assert inbound and all(rec["client_id"] == FRONTEND and rec["tls"] == "true" for rec in inbound), inbound


async def test_h2_to_the_right_identity(mesh: Mesh, app: RecordingApp) -> None:
    answer = await curl(mesh.url("right"), *H2)
    assert (answer.exit_code, answer.status) == (0, 200), answer
    # The far proxy speaks h2 to an h2 application, or restores HTTP/1.1: either way the application answered.
    assert answer.body in (HELLO, b"app saw GET /secret HTTP/1.1\n"), answer
    assert app.connections >= 1


async def test_opaque_tcp_to_the_right_identity(mesh: Mesh, app: RecordingApp) -> None:
    answer = await raw_exchange(mesh.listeners["right", "tcp"], b"opaque ping", half_close=True)
    assert answer == b"opaque ping"
    assert app.received == b"opaque ping"  # the application gets the plaintext, the mesh carried it in TLS
