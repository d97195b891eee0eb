"""What crosses the wire between pods of a default (strict mTLS) lab, captured with tshark on the lab's bridge
while HTTP/1.1, h2 and opaque TCP requests go between pods as applications send them: only TLS, started by mesh
ClientHellos, and not one byte of what the applications said. The same traffic in a --no-mtls lab shows the
markers in the capture, so the search is known to find plaintext when there is some."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
import trio

from ctl.lab.lab import Lab, Pod
from ctl.lab.talk import talk
from ctl.lab.topology import APP_PORT, HTTP_PORT, Mode
from tests.dataplane.http2.hello import hello
from tests.netns.capture import Flow, capture, client_hellos, flows
from tests.netns.labs import bracket, lab, listen_in, run_in, serve_h2
from tests.tools import need

pytestmark = [pytest.mark.netns, pytest.mark.usefixtures("require_netns")]

H2_PORT = 8093
PORTS = (APP_PORT, HTTP_PORT, H2_PORT)
TLS_HANDSHAKE_RECORD = b"\x16\x03"  # content type 22, legacy version 3.x: every TLS connection starts so
MESH_ALPN_PREFIX = "triomesh."


async def _cross_pods(a: Pod, b: Pod, marker: str) -> None:
    """HTTP/1.1 (two requests, one connection) and h2 from a to b, opaque TCP a->b over IPv4 and b->a over
    IPv6; each carries ``marker`` in what the client sends and gets it back in the answer."""
    curl = [need("curl"), "-sS", "--noproxy", "*", "-H", f"x-tlm-marker: {marker}"]
    urls = [f"http://{b.address}:{HTTP_PORT}/{marker}/h1-{n}" for n in (1, 2)]
    out = await run_in(a, *curl, *urls)
    assert out.count(f"b answers GET /{marker}/h1-") == 2, out
    body = f"{marker}-h2-body"
    out = await run_in(a, *curl, "--http2-prior-knowledge", "--data-binary", body, f"http://{b.address}:{H2_PORT}/")
    assert out == body, out
    assert a.ipv6 is not None
    for src, dst, host in ((a, b, b.address), (b, a, a.ipv6)):
        _greeting, echo = await talk(src.netns, host, APP_PORT, [f"{marker}-tcp"])
        assert echo == f"{dst.name} echoes: {marker}-tcp"


async def _captured(the_lab: Lab, pcap: Path, marker: str) -> list[Flow]:
    a, b = the_lab.pod("a"), the_lab.pod("b")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_h2, await listen_in(b, b.address, H2_PORT), hello)
        async with capture(the_lab, pcap):
            await _cross_pods(a, b, marker)
        nursery.cancel_scope.cancel()
    pods = {addr for pod in the_lab.pods for addr in (pod.address, bracket(pod.ipv6 or ""))}
    between_pods = [flow for flow in await flows(pcap) if {_host(flow.src), _host(flow.dst)} <= pods]
    # Every exchange above crossed the bridge: each port's requests and answers are in the capture.
    ports = {int(flow.dst.rpartition(":")[2]) for flow in between_pods}
    assert set(PORTS) <= ports, between_pods
    return between_pods


def _host(address: str) -> str:
    return address.rpartition(":")[0]


@pytest.mark.parametrize("mode", [Mode.REDIRECT, Mode.TPROXY], ids=lambda m: m.value)
async def test_only_mesh_tls_crosses_the_bridge(mode: Mode, tmp_path: Path) -> None:
    marker = f"tlmmark{secrets.token_hex(8)}"
    pcap = tmp_path / "bridge.pcap"
    async with lab(f"w{mode.value[0]}", mode, prefix="tlm") as the_lab:
        with trio.fail_after(90):
            between_pods = await _captured(the_lab, pcap, marker)
            hellos = await client_hellos(pcap, PORTS)
    a, b = the_lab.pod("a"), the_lab.pod("b")
    hits = [(flow.src, flow.dst) for flow in between_pods if marker.encode() in flow.payload]
    assert hits == [], f"plaintext between pods: the marker crossed the bridge in {hits}"
    not_tls = [(flow.src, flow.dst, bytes(flow.payload[:16])) for flow in between_pods]
    not_tls = [entry for entry in not_tls if not entry[2].startswith(TLS_HANDSHAKE_RECORD)]
    assert not_tls == [], f"flows between pods that do not start with a TLS handshake: {not_tls}"
    # Each destination got mesh ClientHellos: ALPN offers the mesh tokens, nothing an application would offer.
    assert a.ipv6 is not None
    expected = {f"{b.address}:{port}" for port in PORTS} | {f"[{a.ipv6}]:{APP_PORT}"}
    assert expected <= {dst for dst, _ in hellos}, hellos
    for dst, alpn in hellos:
        offered = alpn.split(",")
        assert offered and all(token.startswith(MESH_ALPN_PREFIX) for token in offered), (dst, alpn)


async def test_the_capture_finds_plaintext_in_a_lab_without_mtls(tmp_path: Path) -> None:
    marker = f"tlmmark{secrets.token_hex(8)}"
    pcap = tmp_path / "bridge.pcap"
    async with lab("wp", Mode.REDIRECT, prefix="tlm", mtls=False) as the_lab:
        with trio.fail_after(90):
            between_pods = await _captured(the_lab, pcap, marker)
            hellos = await client_hellos(pcap, PORTS)
    b = the_lab.pod("b")
    seen = b"".join(bytes(flow.payload) for flow in between_pods)
    # Requests and answers of every protocol, in the clear.
    for needle in (f"x-tlm-marker: {marker}", f"b answers GET /{marker}/h1-1", f"{marker}-h2-body", f"{marker}-tcp"):
        assert needle.encode() in seen, needle
    assert f"b echoes: {marker}-tcp".encode() in seen
    assert [flow for flow in between_pods if flow.payload.startswith(TLS_HANDSHAKE_RECORD)] == []
    assert hellos == []
    assert any(flow.dst == f"{b.address}:{HTTP_PORT}" for flow in between_pods)
