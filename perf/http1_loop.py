"""The HTTP/1.1 proxy loop against Envoy's L7 proxy, in one interleaved run (issue 4's HTTP/1.1 speed targets).

This script runs the HTTP/1.1 proxying itself, without detection and the connection handler around it: a child
process (``python -m perf.http1_loop serve LISTEN UPSTREAM [--engine on|off]``) with a trio listener, the keep-alive
pool and the real ``Http1Context``, pinned to core 0 like every proxy of the harness. ``triomesh`` serves each
connection with the HTTP/1.1 engine (``Http1Engine.serve``, as ``proxy_http1`` does); ``triomesh-loop`` with
``serve_http1`` alone (the trio loop the engine hands over to).
Envoy runs as the harness runs it (``perf.proxies.start_proxy``, L7, one worker, core 0); the upstream nginx and
wrk run on core 1. For each round, each proxy in turn: ``wrk -t1 -c50`` (req/s, p50, p99, CPU µs/request from
/proc) and ``wrk`` at a fixed rate over 8 connections (p50, p99). The medians over the rounds are printed as a
markdown table with each figure's ratio to Envoy's from the same run.

    python -m perf.http1_loop [--rounds 3] [--duration 5] [--rate 1000] [--proxies triomesh,triomesh-loop,envoy]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Final

import trio

from dataplane.connections import ConnectionTable
from dataplane.http.request_id import RequestIds
from dataplane.http1.engine import Http1Engine
from dataplane.http1.proxy import Http1Context, serve_http1
from dataplane.net.addr import SockAddr
from dataplane.net.connect import open_upstream
from dataplane.telemetry.http_stats import HttpStats
from dataplane.upstream.pool import ConnectionPool, PooledStream
from perf import parse
from perf.measure import FIXED_RATE_CONNECTIONS, FIXED_RATE_SCRIPT, WRK_CONNECTIONS
from perf.peers import Layer
from perf.probes import cpu_seconds, process_tree
from perf.processes import BenchError, Services, free_port, pin_self, run_tool
from perf.proxies import LOOPBACK, REPO, Running, start_proxy, start_upstream
from perf.scenarios import PEER_BY_NAME

PROXIES: Final = ("triomesh", "triomesh-loop", "envoy")
"""triomesh: the HTTP/1.1 engine (``Http1Engine``) as ``proxy_http1`` runs it; triomesh-loop: ``serve_http1`` alone."""
FIGURES: Final = (
    ("rps", "req/s", True),
    ("cpu_us_per_req", "CPU µs/req", False),
    ("p50_ms", "p50 ms", False),
    ("p99_ms", "p99 ms", False),
    ("fixed_p50_ms", "p50 ms @rate", False),
    ("fixed_p99_ms", "p99 ms @rate", False),
    ("fixed_rps", "achieved req/s @rate", True),
)


async def _start_triomesh(services: Services, upstream: SockAddr, engine: str) -> Running:
    listen = SockAddr(LOOPBACK, free_port())
    argv = [sys.executable, "-m", "perf.http1_loop", "serve", str(listen), str(upstream), f"--engine={engine}"]
    service = await services.start("triomesh-http1", argv, core=0, ready=listen, cwd=REPO)
    return Running(listen, service)


async def _measure(name: str, upstream: SockAddr, args: argparse.Namespace, run_dir: Path) -> dict[str, float]:
    await trio.Path(run_dir).mkdir()
    async with Services(run_dir) as services:
        if name.startswith("triomesh"):
            running = await _start_triomesh(services, upstream, engine="off" if name == "triomesh-loop" else "on")
        else:
            running = await start_proxy(services, PEER_BY_NAME[name], Layer.L7, upstream, run_dir)
        assert running.service is not None
        tree = process_tree(running.service.pid)
        url = f"http://{running.address}/"
        timeout = args.duration + 30.0
        cpu = cpu_seconds(tree)
        argv = ["wrk", "-t1", f"-c{WRK_CONNECTIONS}", f"-d{args.duration}s", "--latency", url]
        wrk = _checked(parse.parse_wrk(await run_tool(argv, timeout=timeout)))
        cpu = cpu_seconds(tree) - cpu
        argv = ["wrk", "-t1", f"-c{FIXED_RATE_CONNECTIONS}", f"-d{args.duration}s", "--latency"]
        argv += ["-s", str(FIXED_RATE_SCRIPT), url, "--", str(args.rate)]
        fixed = _checked(parse.parse_wrk(await run_tool(argv, timeout=timeout)))
        if not running.service.running():
            raise BenchError(f"{name} exited during the run: {running.service.log_tail()}")
        return {
            "rps": wrk.rps,
            "cpu_us_per_req": cpu * 1e6 / wrk.requests,
            "p50_ms": wrk.p50_ms,
            "p99_ms": wrk.p99_ms,
            "fixed_p50_ms": fixed.p50_ms,
            "fixed_p99_ms": fixed.p99_ms,
            "fixed_rps": fixed.rps,
        }


def _checked(result: parse.WrkResult) -> parse.WrkResult:
    if result.requests == 0 or result.errors > result.requests // 100:
        raise BenchError(f"wrk: {result.errors} errors in {result.requests} requests")
    return result


async def _run(args: argparse.Namespace) -> str:
    pin_self()
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in args.proxies}
    with tempfile.TemporaryDirectory(prefix="http1-loop-") as tmp:
        run_dir = Path(tmp)
        async with Services(run_dir) as services:
            upstream, _, _ = await start_upstream(services, run_dir)
            for round_no in range(args.rounds):
                for name in args.proxies:
                    figures = await _measure(name, upstream, args, run_dir / f"{name}-{round_no}")
                    samples[name].append(figures)
                    print(f"round {round_no + 1} {name}: {_line(figures)}", file=sys.stderr)
    return _table(samples, args)


def _line(figures: dict[str, float]) -> str:
    return ", ".join(f"{label} {figures[key]:.3f}" for key, label, _ in FIGURES)


def _table(samples: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> str:
    medians = {
        name: {key: statistics.median(s[key] for s in runs) for key, _, _ in FIGURES} for name, runs in samples.items()
    }
    base = medians.get("envoy")
    head = "| proxy | " + " | ".join(label for _, label, _ in FIGURES) + " |"
    rows = [
        f"{args.rounds} rounds of {args.duration} s, medians; fixed rate {args.rate} req/s over "
        f"{FIXED_RATE_CONNECTIONS} connections; (xN) = ratio to Envoy L7 in this run",
        "",
        head,
        "|---|" + "---:|" * len(FIGURES),
    ]
    for name, figures in medians.items():
        cells = []
        for key, _, _ in FIGURES:
            value = figures[key]
            text = f"{value:,.0f}" if key in ("rps", "fixed_rps") else f"{value:.3f}" if "ms" in key else f"{value:.1f}"
            if base is not None and name != "envoy" and base[key]:
                text += f" (x{value / base[key]:.2f})"
            cells.append(text)
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


# === the proxy child ===


async def _serve(listen: SockAddr, upstream: SockAddr, engine_on: bool) -> None:
    stats, table, ids = HttpStats(), ConnectionTable(), RequestIds()
    engine = Http1Engine() if engine_on else None

    async def connect(dst: SockAddr) -> PooledStream[SockAddr]:
        sock = await open_upstream(dst, timeout=2.0, mark=0)
        return PooledStream(dst, sock)

    pool: ConnectionPool[SockAddr] = ConnectionPool(connect)
    listeners = await trio.open_tcp_listeners(listen.port, host=listen.ip, backlog=1024)

    async def handle(stream: trio.SocketStream) -> None:
        client = SockAddr.from_sockname(stream.socket.getpeername())
        rec = table.open("outbound", client, listen)
        async with stream:
            ctx = Http1Context(rec, upstream, pool, stats, ids)
            if engine is not None:
                await engine.serve(stream, ctx)
            else:
                await serve_http1(stream, ctx)
        table.close(rec)

    async with trio.open_nursery() as nursery:
        await nursery.start(pool.run)
        if engine is not None:
            await nursery.start(engine.run)
        await nursery.start(trio.serve_listeners, handle, listeners)


def _addr(text: str) -> SockAddr:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return SockAddr(host, int(port))


def _proxies(text: str) -> tuple[str, ...]:
    names = tuple(n for n in text.split(",") if n)
    unknown = [n for n in names if n not in PROXIES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"--proxies: choose from {','.join(PROXIES)}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.http1_loop", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="(internal) run the proxy loop: LISTEN -> UPSTREAM")
    serve.add_argument("listen", type=_addr)
    serve.add_argument("upstream", type=_addr)
    serve.add_argument("--engine", choices=("on", "off"), default="on")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=5, help="seconds per load")
    parser.add_argument("--rate", type=int, default=1000, help="requests/s of the fixed-rate load")
    parser.add_argument("--proxies", type=_proxies, default=PROXIES)
    args = parser.parse_args(argv)
    if args.command == "serve":
        trio.run(_serve, args.listen, args.upstream, args.engine == "on")
        return 0
    for flag in ("rounds", "duration", "rate"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be at least 1")
    try:
        print(trio.run(_run, args))
    except BenchError as exc:
        print(f"http1_loop: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
