"""Multi-core scaling: one worker against two, for triomesh (``--workers``) and Envoy (``--concurrency``).

The main run pins each proxy to one core to compare per core. This one asks what a second worker buys: the
proxy may use every core, and so do the load generator (``wrk`` with one thread per core) and the upstream nginx
(one worker per core). On a machine whose cores are all shared with the load, a second worker cannot double the
rate; running Envoy the same way in the same run shows how much of the limit is the machine's. The load is the
``tcp_rr`` one (small HTTP/1.1 exchanges through an L4 relay), interleaved over rounds, medians reported.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import msgspec
import trio

from dataplane.net.addr import SockAddr
from perf import parse, peers
from perf.machine import describe
from perf.measure import Target
from perf.peers import Layer
from perf.probes import cpu_seconds, process_tree
from perf.processes import BenchError, Services, free_port, run_tool, wait_listening
from perf.proxies import LOOPBACK, missing_tool, start_proxy
from perf.report import TIMES
from perf.results import Machine
from perf.scenarios import PEER_BY_NAME

PROXIES: Final = ("triomesh", "envoy")
WORKERS: Final = (1, 2)
CONNECTIONS: Final = 100


class ScalingSample(msgspec.Struct, frozen=True, kw_only=True):
    round: int
    proxy: str
    workers: int
    rps: float = 0.0
    cpu_us_per_req: float = 0.0
    error: str | None = None


class ScalingResult(msgspec.Struct, frozen=True, kw_only=True):
    machine: Machine
    cores: str
    """The CPU list everything ran on (taskset syntax)."""
    rounds: int
    duration_s: int
    connections: int
    started_at: str
    finished_at: str
    samples: list[ScalingSample]


async def run_scaling(rounds: int, duration: int, work_dir: Path, progress: Callable[[str], None]) -> ScalingResult:
    machine = await describe()
    started = _now()
    cores = f"0-{machine.cores - 1}"
    await trio.Path(work_dir).mkdir(parents=True, exist_ok=True)
    samples: list[ScalingSample] = []
    async with Services(work_dir) as services:
        upstream = await _start_upstream(services, work_dir, cores, machine.cores)
        for round_no in range(1, rounds + 1):
            for proxy in PROXIES:
                for workers in WORKERS:
                    sample = await _one(round_no, proxy, workers, upstream, cores, machine.cores, duration, work_dir)
                    samples.append(sample)
                    progress(_describe(rounds, sample))
    return ScalingResult(
        machine=machine,
        cores=cores,
        rounds=rounds,
        duration_s=duration,
        connections=CONNECTIONS,
        started_at=started,
        finished_at=_now(),
        samples=samples,
    )


async def _start_upstream(services: Services, work_dir: Path, cores: str, threads: int) -> SockAddr:
    http1, h2c = SockAddr(LOOPBACK, free_port()), SockAddr(LOOPBACK, free_port())
    config = peers.nginx_upstream(str(work_dir), http1, h2c, workers=threads)
    path = work_dir / "upstream.conf"
    path.write_text(config)
    argv = ["nginx", "-p", str(work_dir), "-e", str(work_dir / "error.log"), "-c", str(path)]
    service = await services.start("upstream-nginx", argv, core=cores, ready=http1)
    await wait_listening(service, h2c)
    return http1


async def _one(
    round_no: int,
    proxy: str,
    workers: int,
    upstream: SockAddr,
    cores: str,
    threads: int,
    duration: int,
    work_dir: Path,
) -> ScalingSample:
    sample = ScalingSample(round=round_no, proxy=proxy, workers=workers)
    peer = PEER_BY_NAME[proxy]
    missing = missing_tool(peer)
    if missing is not None:
        return msgspec.structs.replace(sample, error=missing)
    run_dir = work_dir / f"r{round_no}-{proxy}-{workers}w"
    await trio.Path(run_dir).mkdir(parents=True, exist_ok=True)
    try:
        async with Services(run_dir) as services:
            running = await start_proxy(services, peer, Layer.L4, upstream, run_dir, workers=workers, core=cores)
            assert running.service is not None
            target = Target(running.address, upstream.port, process_tree(running.service.pid))
            argv = [
                "wrk",
                f"-t{threads}",
                f"-c{CONNECTIONS}",
                f"-d{duration}s",
                "--latency",
                f"http://{target.address}/",
            ]
            start = cpu_seconds(target.tree)
            output = await run_tool(argv, timeout=duration + 30.0, core=cores)
            used = cpu_seconds(target.tree) - start
            wrk = parse.parse_wrk(output)
            if wrk.requests == 0 or wrk.errors > wrk.requests // 100:
                raise BenchError(f"wrk: {wrk.requests} requests, {wrk.errors} errors")
            return msgspec.structs.replace(sample, rps=wrk.rps, cpu_us_per_req=used * 1e6 / wrk.requests)
    except (BenchError, parse.ToolOutputError) as exc:
        return msgspec.structs.replace(sample, error=str(exc))


def render_markdown(result: ScalingResult) -> str:
    """The report: per proxy and worker count, the median req/s, its ratio to the same proxy's one worker, and
    the CPU each request cost."""
    m = result.machine
    lines = [
        f"# triomesh benchmark: scaling, {result.started_at[:10]}, {m.cpu}",
        "",
        f"Machine: {m.cpu}, {m.cores} cores, {m.memory_gib} GiB, kernel {m.kernel}, {m.os}, Python {m.python}, "
        f"triomesh {m.versions.get('triomesh', '?')}.",
        "",
        f"Method: opaque TCP request/response (`wrk -t{m.cores} -c{result.connections}`, small HTTP/1.1 exchanges "
        f"on persistent connections) through each proxy as an L4 relay to nginx ({m.cores} workers). Everything, "
        f"proxy included, may run on every core ({result.cores}): the load generator and the upstream share the "
        f"cores with the proxy. {result.rounds} interleaved round(s) of {result.duration_s} s; medians. "
        f"Started {result.started_at}, finished {result.finished_at}.",
        "",
        f"| proxy | workers | req/s | {TIMES} its 1 worker | CPU µs/req | rounds |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    notes: list[str] = []
    for proxy in PROXIES:
        one = _median(result.samples, proxy, 1, "rps")
        for workers in WORKERS:
            good = [s for s in result.samples if s.proxy == proxy and s.workers == workers and s.error is None]
            errors = [s.error for s in result.samples if s.proxy == proxy and s.workers == workers and s.error]
            notes += [f"- {proxy} {workers} worker(s): {error}" for error in errors]
            rps = _median(result.samples, proxy, workers, "rps")
            cpu = _median(result.samples, proxy, workers, "cpu_us_per_req")
            ratio = f"{TIMES}{rps / one:.2f}" if rps is not None and one else "—"
            lines.append(
                f"| {PEER_BY_NAME[proxy].title} | {workers} | {_fmt(rps, 0)} | {ratio} | {_fmt(cpu, 1)} | {len(good)} |"
            )
    return "\n".join([*lines, "", *notes]).rstrip() + "\n"


def _median(samples: list[ScalingSample], proxy: str, workers: int, key: str) -> float | None:
    values = [float(getattr(s, key)) for s in samples if s.proxy == proxy and s.workers == workers and s.error is None]
    return statistics.median(values) if values else None


def _fmt(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _describe(rounds: int, sample: ScalingSample) -> str:
    head = f"[{sample.round}/{rounds}] scaling {sample.proxy:<9} workers={sample.workers}"
    if sample.error is not None:
        return f"{head} FAILED: {sample.error}"
    return f"{head} rps={sample.rps:,.0f}  cpu_us_per_req={sample.cpu_us_per_req:.1f}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
