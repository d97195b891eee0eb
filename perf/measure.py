"""One measurement: a fresh proxy, one load, the figures of one scenario for one proxy.

CPU is the proxy's whole process tree's user+system time across the load (from /proc), divided by the work
the load generator reports done; memory is read from smaps_rollup. Load generators run on core 1, the proxy on
core 0.
"""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path
from typing import Final, NamedTuple

import trio

from dataplane.net.addr import SockAddr
from perf import parse
from perf.idle import IdleConnections
from perf.mtls_peers import MeshIdentities
from perf.peers import Layer
from perf.probes import Memory, cpu_seconds, established_to, memory, process_tree
from perf.processes import LOAD_CORE, BenchError, Service, Services, free_port, run_tool, wait_listening
from perf.proxies import LOOPBACK, start_proxy, start_upstream
from perf.scenarios import P999, RSS, Peer, Scenario, Tool
from perf.service_endpoints import requests_served, shares, start_endpoints
from perf.service_peers import VIP
from perf.two_hops import Hops, prove_mtls, start_two_hops

FIXED_RATE_SCRIPT: Final = Path(__file__).with_name("fixed_rate.lua")
WRK_CONNECTIONS: Final = 50
FIXED_RATE_CONNECTIONS: Final = 8  # enough that a slow reply never holds back the schedule at 1,000 req/s
H2LOAD_CONNECTIONS: Final = 10
H2LOAD_STREAMS: Final = 10
TEARDOWN_TIMEOUT: Final = 10.0  # seconds for the proxy to pass the upstream's FINs on to the idle clients
_POLL: Final = 0.05
SETTLE: Final = 1.0  # seconds for a proxy's memory to settle before it is read
_KIB_PER_MIB: Final = 1024
_GB: Final = 1e9


class Load(NamedTuple):
    """What a run of the load generator needs to know."""

    duration: int
    fixed_rate: int
    idle_connections: int
    mtls_idle_connections: int = 0
    """Idle connections of the mTLS idle scenario (fewer: a mesh TLS connection costs triomesh 4 descriptors)."""


class Upstreams(NamedTuple):
    http1: SockAddr
    h2c: SockAddr


class Target(NamedTuple):
    """What a load runs against."""

    address: SockAddr
    """Where the load generator connects: the proxy's listener, or the upstream itself."""
    upstream_port: int
    tree: list[int]
    """The proxy processes whose CPU and memory are measured; empty with no proxy."""
    enter: tuple[str, ...] = ()
    """Prefix of the load generator's command line (``ip netns exec POD`` in the lab)."""
    upstream_service: Service | None = None
    """The idle scenario's own upstream, stopped first when its connections are torn down."""
    hops: tuple[list[int], ...] = ()
    """The mTLS scenarios' two hops, each its process tree (``tree`` is both): memory is also given per hop."""


async def measure(
    scenario: Scenario,
    peer: Peer,
    layer: Layer,
    upstreams: Upstreams,
    load: Load,
    run_dir: Path,
    identities: MeshIdentities | None = None,
) -> dict[str, float]:
    """Start ``peer`` as ``layer`` (two hops of it with ``identities`` in an mTLS scenario), run ``scenario``'s
    load through it, stop it; returns the figures."""
    await trio.Path(run_dir).mkdir(parents=True, exist_ok=True)
    own_upstream: Service | None = None
    endpoints: tuple[SockAddr, ...] = ()
    async with Services(run_dir) as services:
        if scenario.service:
            endpoints = await start_endpoints(services, run_dir)
            upstream = VIP  # triomesh's forward listener leads there; its policy maps it to the endpoints
        elif scenario.tool is Tool.IPERF3:
            upstream = await start_iperf3_server(services, SockAddr(LOOPBACK, free_port()))
        elif scenario.tool is Tool.IDLE:
            # An upstream of its own on fresh ports: the thousands of connections each idle run closes linger in
            # TIME_WAIT, and the next run to the same upstream port would find the ephemeral ports used up.
            own = run_dir / "upstream"
            await trio.Path(own).mkdir(exist_ok=True)
            upstream, _, own_upstream = await start_upstream(services, own)
        elif scenario.h2c and (layer is Layer.L4 or not peer.is_process or peer.h2_upstream):
            upstream = upstreams.h2c  # h2c end to end: a relay, no proxy, or an h2-to-h2 proxy
        else:
            upstream = upstreams.http1  # an L7 proxy speaks HTTP/1.1 keep-alive to the upstream
        if scenario.mtls:
            if identities is None:
                raise BenchError(f"{scenario.name} needs the run's mesh identities")
            hops = await start_two_hops(services, peer, layer, upstream, run_dir, identities)
            return await _measure_two_hops(scenario, peer, hops, upstream.port, own_upstream, load, identities)
        running = await start_proxy(services, peer, layer, upstream, run_dir, h2c=scenario.h2c, endpoints=endpoints)
        tree = process_tree(running.service.pid) if running.service is not None else []
        target = Target(running.address, upstream.port, tree, upstream_service=own_upstream)
        before = await requests_served(endpoints)
        figures = await run_load(scenario, target, load)
        if running.service is not None and not running.service.running():
            raise BenchError(f"{peer.name} exited during the run: {running.service.log_tail()}")
        if endpoints:
            figures |= shares(before, await requests_served(endpoints))
        return figures


async def _measure_two_hops(
    scenario: Scenario,
    peer: Peer,
    hops: Hops,
    upstream_port: int,
    own_upstream: Service | None,
    load: Load,
    identities: MeshIdentities,
) -> dict[str, float]:
    """The load through both hops, proven mTLS before and after; CPU summed over both, memory also per hop."""
    await prove_mtls(peer, hops, identities, probe=True)
    trees = (process_tree(hops.hop1.pid), process_tree(hops.hop2.pid))
    target = Target(hops.address, upstream_port, [*trees[0], *trees[1]], upstream_service=own_upstream, hops=trees)
    figures = await run_load(scenario, target, load)
    for hop in (hops.hop1, hops.hop2):
        if not hop.running():
            raise BenchError(f"{hop.name} exited during the run: {hop.log_tail()}")
    await prove_mtls(peer, hops, identities, probe=False)  # the load's own connections too
    return figures


async def start_iperf3_server(services: Services, addr: SockAddr, enter: tuple[str, ...] = ()) -> SockAddr:
    """A fresh iperf3 server per bulk measurement (one that saw an aborted test may refuse the next)."""
    argv = [*enter, "iperf3", "-s", "-B", addr.ip, "-p", str(addr.port)]
    server = await services.start("iperf3-server", argv, core=LOAD_CORE)
    await wait_listening(server, addr)
    return addr


async def run_load(scenario: Scenario, target: Target, load: Load) -> dict[str, float]:
    """Run ``scenario``'s load generator against ``target`` once; returns the figures."""
    addr, enter = target.address, target.enter
    url = f"http://{addr}/"
    timeout = load.duration + 30.0
    cpu = _CpuMeter(target.tree)
    match scenario.tool:
        case Tool.WRK:
            argv = [*enter, "wrk", "-t1", f"-c{WRK_CONNECTIONS}", f"-d{load.duration}s", "--latency", url]
            wrk = _check_wrk(parse.parse_wrk(await cpu.around(run_tool(argv, timeout=timeout))))
            figures = {"rps": wrk.rps, "p50_ms": wrk.p50_ms, "p99_ms": wrk.p99_ms}
            return figures | cpu.per(wrk.requests, 1e6, "cpu_us_per_req") | _rss_after(scenario, target)
        case Tool.WRK_FIXED_RATE:
            argv = [*enter, "wrk", "-t1", f"-c{FIXED_RATE_CONNECTIONS}", f"-d{load.duration}s", "--latency"]
            argv += ["-s", str(FIXED_RATE_SCRIPT), url, "--", str(load.fixed_rate)]
            wrk = _check_wrk(parse.parse_wrk(await run_tool(argv, timeout=timeout)))
            figures = {"p50_ms": wrk.p50_ms, "p99_ms": wrk.p99_ms, "rps": wrk.rps}
            if P999 in scenario.figures:
                if wrk.p999_ms is None:
                    raise BenchError(f"wrk: no 99.9% line from {FIXED_RATE_SCRIPT.name}")
                figures["p999_ms"] = wrk.p999_ms
            return figures
        case Tool.H2LOAD:
            argv = [*enter, "h2load", f"-c{H2LOAD_CONNECTIONS}", f"-m{H2LOAD_STREAMS}", "-t1", "-D"]
            argv += [str(load.duration), url]
            h2 = parse.parse_h2load(await cpu.around(run_tool(argv, timeout=timeout)))
            if h2.succeeded == 0 or h2.failed + h2.non_2xx > h2.succeeded // 100:
                raise BenchError(f"h2load: {h2.succeeded} requests done, {h2.failed} failed, {h2.non_2xx} not 2xx")
            return {"rps": h2.rps} | cpu.per(h2.succeeded, 1e6, "cpu_us_per_req")
        case Tool.IPERF3:
            argv = [*enter, "iperf3", "-c", addr.ip, "-p", str(addr.port), "-t", str(load.duration)]
            argv += ["-P", str(scenario.streams), "-J"]
            bulk = parse.parse_iperf3(await cpu.around(run_tool(argv, timeout=timeout)))
            gigabytes = bulk.bytes / _GB
            return {"gbytes_per_s": gigabytes / bulk.seconds} | cpu.per(gigabytes, 1.0, "cpu_s_per_gb")
        case Tool.IDLE:
            if enter:
                raise BenchError("the idle scenario holds its connections from this process: loopback only")
            if target.hops:
                return await _idle_per_hop(target, load.mtls_idle_connections)
            return await _idle(target, load.idle_connections)
        case Tool.REST:
            await trio.sleep(SETTLE)
            rest = memory(target.tree)
            return {"rss_mib": rest.rss_kib / _KIB_PER_MIB, "pss_mib": rest.pss_kib / _KIB_PER_MIB}


async def _idle(target: Target, count: int) -> dict[str, float]:
    await trio.sleep(SETTLE)
    before = memory(target.tree)
    holder = IdleConnections(target.address, target.upstream_port)
    try:
        await holder.hold(count)
        await trio.sleep(SETTLE)
        grown: Memory = memory(target.tree) - before
    finally:
        await _tear_down(holder, target)
    return {"rss_kib_per_conn": grown.rss_kib / count, "pss_kib_per_conn": grown.pss_kib / count}


async def _idle_per_hop(target: Target, count: int) -> dict[str, float]:
    """The idle figures of each hop of a two-hop chain, and the worse hop's RSS growth."""
    await trio.sleep(SETTLE)
    before = [memory(tree) for tree in target.hops]
    holder = IdleConnections(target.address, target.upstream_port)
    try:
        await holder.hold(count)
        await trio.sleep(SETTLE)
        grown = [memory(tree) - start for tree, start in zip(target.hops, before, strict=True)]
    finally:
        await _tear_down(holder, target)
    figures = {"rss_kib_per_conn_worse_hop": max(hop.rss_kib for hop in grown) / count}
    for number, hop in enumerate(grown, start=1):
        figures |= {
            f"rss_kib_per_conn_hop{number}": hop.rss_kib / count,
            f"pss_kib_per_conn_hop{number}": hop.pss_kib / count,
        }
    return figures


def _rss_after(scenario: Scenario, target: Target) -> dict[str, float]:
    """The proxy tree's memory right after the load, for scenarios that report it (the mTLS pairs)."""
    if RSS not in scenario.figures or not target.tree:
        return {}
    return {"rss_mib": memory(target.tree).rss_kib / _KIB_PER_MIB}


async def _tear_down(holder: IdleConnections, target: Target) -> None:
    """Close the idle connections from the upstream's end first.

    Whoever closes first keeps the connection in TIME_WAIT for a minute. The upstream's and the proxy's listening
    ports are fixed, so TIME_WAITs there cost nothing; the holder's or the proxy's upstream-side ephemeral ports
    would pile up by the ten thousand per run and starve the next proxy that binds before connecting (HAProxy).
    """
    with trio.CancelScope(shield=True):
        if target.upstream_service is not None:
            await target.upstream_service.stop()
            with trio.move_on_after(TEARDOWN_TIMEOUT):
                while established_to(target.upstream_port) > 0:  # noqa: ASYNC110 - polls a kernel table
                    await trio.sleep(_POLL)
        holder.close()


class _CpuMeter:
    """The proxy tree's CPU seconds across one awaited load run (nothing when there is no proxy)."""

    def __init__(self, tree: list[int]) -> None:
        self.tree = tree
        self.seconds = 0.0

    async def around(self, load: Awaitable[str]) -> str:
        start = cpu_seconds(self.tree)
        output = await load
        self.seconds = cpu_seconds(self.tree) - start
        return output

    def per(self, work: float, scale: float, key: str) -> dict[str, float]:
        if not self.tree or work <= 0:
            return {}
        return {key: self.seconds * scale / work}


def _check_wrk(result: parse.WrkResult) -> parse.WrkResult:
    if result.requests == 0:
        raise BenchError("wrk: no request completed")
    if result.errors > result.requests // 100:
        raise BenchError(f"wrk: {result.errors} errors in {result.requests} requests")
    return result
