"""The mTLS scenarios' proxies: two hops of one proxy, both pinned to core 0, and the proof that they spoke mTLS.

wrk -> hop 1 (127.0.0.1:A) -> TLS 1.3 mTLS -> hop 2 (127.0.0.1:B) -> upstream. triomesh's hop 1 is a
``--forward`` listener whose policy marks 127.0.0.1:B as meshed, its hop 2 an ``--inbound-forward`` listener
under ``inbound.mtls: strict``; Envoy's hops are its usual listener and cluster with TLS transport sockets
(perf/mtls_peers.py). Before a load is measured one request goes through, and both hops must account for every
connection as mesh TLS with the expected peer identity, so a plaintext fallback is never benchmarked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, NamedTuple

import trio

from ctl.client import AdminAddress, AdminClient
from ctl.errors import CtlError
from dataplane.net.addr import SockAddr
from perf import mtls_peers, peers
from perf.mtls_peers import MeshIdentities
from perf.mtls_proof import envoy_problem, triomesh_problem
from perf.peers import Layer
from perf.processes import PROXY_CORE, READY_TIMEOUT, BenchError, Service, Services
from perf.proxies import REPO, envoy_argv, envoy_binary, free_addr, triomesh_argv, write_config
from perf.scenarios import Peer

PROBE_TIMEOUT: Final = 5.0  # seconds for one request through both hops
_POLL: Final = 0.05
_MAX_ANSWER: Final = 1 << 16


class Hops(NamedTuple):
    address: SockAddr
    """Hop 1's listener: where the load generator connects."""
    hop1: Service
    hop2: Service
    hop2_address: SockAddr
    admin1: SockAddr
    admin2: SockAddr


async def start_two_hops(
    services: Services, peer: Peer, layer: Layer, upstream: SockAddr, run_dir: Path, identities: MeshIdentities
) -> Hops:
    """Start hop 2 in front of ``upstream``, then hop 1 in front of hop 2, both as ``layer`` on the proxy core;
    returns once both listen (and, for triomesh, are ready: an identity loaded)."""
    listen1, listen2, admin1, admin2 = free_addr(), free_addr(), free_addr(), free_addr()
    client, server = identities
    match peer.name:
        case "triomesh":
            policy2 = mtls_peers.triomesh_server_policy(client.spiffe_id, layer)
            policy1 = mtls_peers.triomesh_client_policy(listen2.port, server.spiffe_id, layer)
            argv2 = triomesh_argv(["--inbound-forward", f"{listen2}={upstream}"], admin2)
            argv2 += ["--identity", str(server.directory), "--policy", write_config(run_dir / "hop2.json", policy2)]
            argv1 = triomesh_argv(["--forward", f"{listen1}={listen2}"], admin1)
            argv1 += ["--identity", str(client.directory), "--policy", write_config(run_dir / "hop1.json", policy1)]
        case "envoy":
            binary = envoy_binary()
            if binary is None:
                raise BenchError("envoy not installed")
            tls2 = mtls_peers.envoy_downstream_tls(server, client.spiffe_id)
            config2 = peers.envoy(listen2, upstream, admin2, layer, downstream_tls=tls2)
            tls1 = mtls_peers.envoy_upstream_tls(client, server.spiffe_id)
            config1 = peers.envoy(listen1, listen2, admin1, layer, upstream_tls=tls1)
            argv2 = envoy_argv(binary, write_config(run_dir / "hop2.yaml", config2))
            argv1 = envoy_argv(binary, write_config(run_dir / "hop1.yaml", config1))
        case _:
            raise BenchError(f"{peer.name} has no mTLS two-hop configuration")
    hop2 = await services.start(f"{peer.name}-hop2", argv2, core=PROXY_CORE, ready=listen2, cwd=REPO)
    hop1 = await services.start(f"{peer.name}-hop1", argv1, core=PROXY_CORE, ready=listen1, cwd=REPO)
    hops = Hops(listen1, hop1, hop2, listen2, admin1, admin2)
    if peer.name == "triomesh":
        for service, admin in ((hop2, admin2), (hop1, admin1)):
            await _wait_ready(service, admin)
    return hops


async def prove_mtls(peer: Peer, hops: Hops, identities: MeshIdentities, *, probe: bool) -> None:
    """BenchError unless both hops account for every connection so far as TLS with the expected peer. With
    ``probe``, one request goes through first (so there is something to account for)."""
    if probe:
        await _probe(hops.address)
    if peer.name == "triomesh":
        checks = [
            (hops.admin2, "hop 2", "inbound", "client_id", identities.client.spiffe_id),
            (hops.admin1, "hop 1", "outbound", "server_id", identities.server.spiffe_id),
        ]
        for admin, hop, direction, key, expected in checks:
            body = await admin_get(admin, "/connections")
            problem = triomesh_problem(body, hop=hop, direction=direction, peer_key=key, peer_id=expected)
            if problem is not None:
                raise BenchError(f"not mTLS, refusing to measure: {problem}")
    else:
        stats2 = (await admin_get(hops.admin2, "/stats?filter=ssl")).decode(errors="replace")
        stats1 = (await admin_get(hops.admin1, "/stats?filter=ssl")).decode(errors="replace")
        listener = (hops.hop2_address.ip, hops.hop2_address.port)
        for problem in (envoy_problem(stats2, hop="hop 2", listener=listener), envoy_problem(stats1, hop="hop 1")):
            if problem is not None:
                raise BenchError(f"not mTLS, refusing to measure: {problem}")


async def _probe(address: SockAddr) -> None:
    """One ``GET /`` through both hops on a fresh connection; BenchError unless it is answered 200."""
    request = f"GET / HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n".encode()
    answer = bytearray()
    try:
        with trio.fail_after(PROBE_TIMEOUT):
            stream = await trio.open_tcp_stream(address.ip, address.port)
            async with stream:
                await stream.send_all(request)
                while len(answer) < _MAX_ANSWER and (chunk := await stream.receive_some()):
                    answer += chunk
    except (OSError, trio.BrokenResourceError, trio.TooSlowError) as exc:
        raise BenchError(f"a request through both hops failed: {str(exc) or type(exc).__name__}") from None
    status = bytes(answer).split(b"\r\n", 1)[0].decode(errors="replace")
    if status.split(" ")[1:2] != ["200"]:
        raise BenchError(f"a request through both hops was answered {status!r}, not 200")


async def _wait_ready(service: Service, admin: SockAddr) -> None:
    why = "no answer"
    with trio.move_on_after(READY_TIMEOUT):
        while True:
            if not service.running():
                raise BenchError(f"{service.name} exited with {service.proc.returncode}: {service.log_tail()}")
            client = AdminClient(AdminAddress(admin.ip, admin.port))
            try:
                ready, why = await trio.to_thread.run_sync(client.ready)
            except CtlError as exc:
                ready, why = False, str(exc)
            if ready:
                return
            await trio.sleep(_POLL)
    raise BenchError(f"{service.name} not ready within {READY_TIMEOUT:g}s: {why}")


async def admin_get(admin: SockAddr, path: str) -> bytes:
    """GET ``path`` from an HTTP admin or status endpoint; its body, or BenchError unless it answered 200."""
    client = AdminClient(AdminAddress(admin.ip, admin.port))
    try:
        answer = await trio.to_thread.run_sync(client.get, path)
    except CtlError as exc:
        raise BenchError(str(exc)) from None
    if answer.status != 200:
        raise BenchError(f"{client.describe()} answered GET {path} with {answer.status} {answer.reason}")
    return answer.body
