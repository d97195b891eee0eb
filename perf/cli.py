"""``python -m perf``: run the benchmark on loopback (``run``), through the lab's sidecars (``lab``), one worker
against two (``scaling``), or re-render a report from its raw JSON (``report``). Bad flags exit 2, failures exit
1, both without a traceback."""

from __future__ import annotations

import argparse
import resource
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, TypeVar

import msgspec
import trio

from perf.measure import Load
from perf.parse import ToolOutputError
from perf.processes import BenchError, pin_self
from perf.proxies import REPO
from perf.report import write_report
from perf.results import RunResult
from perf.scenarios import BY_NAME, PEER_BY_NAME, PEERS, SCENARIOS, Tool

T = TypeVar("T")

RESULTS: Final = REPO / "perf" / "results"
FULL_ROUNDS: Final = 3
FULL_DURATION: Final = 5
SMOKE_DURATION: Final = 1
IDLE_CONNECTIONS: Final = 10_000
SMOKE_IDLE_CONNECTIONS: Final = 200
FIXED_RATE: Final = 1_000
MESH_TLS_DESCRIPTORS: Final = 4  # a triomesh hop's client socket, TLS socket and the bridge's socketpair
EXIT_TERMINATED: Final = 143  # 128 + SIGTERM, what a shell reports for a process SIGTERM ended
# Descriptors a proxy needs besides its connection pairs (listeners, admin, logs, libraries).
_DESCRIPTOR_MARGIN: Final = 200


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        match args.command:
            case "run":
                return trio.run(_until_sigterm, _run, args)
            case "lab":
                return trio.run(_until_sigterm, _lab, args)
            case "scaling":
                return trio.run(_until_sigterm, _scaling, args)
            case _:
                result = msgspec.json.decode(Path(args.result).read_bytes(), type=RunResult)
                for path in write_report(result, Path(args.result).with_suffix("")):
                    print(path)
                return 0
    except (BenchError, ToolOutputError) as exc:
        print(f"perf: {exc}", file=sys.stderr)
        return 1
    except (OSError, msgspec.DecodeError) as exc:
        print(f"perf: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("perf: interrupted; every process it started is stopped", file=sys.stderr)
        return 130


async def _until_sigterm(main: Callable[[argparse.Namespace], Awaitable[int]], args: argparse.Namespace) -> int:
    """Runs ``main``; SIGTERM cancels it like Ctrl-C does, so every process it started is stopped (exit 143)."""
    status = EXIT_TERMINATED
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def work() -> None:
                nonlocal status
                try:
                    status = await main(args)
                except (BenchError, ToolOutputError) as exc:  # here, not out of the nursery as an exception group
                    print(f"perf: {exc}", file=sys.stderr)
                    status = 1
                nursery.cancel_scope.cancel(reason="done")

            async def watch() -> None:
                async for _ in signals:
                    print("perf: SIGTERM: stopping every process it started", file=sys.stderr)
                    nursery.cancel_scope.cancel(reason="SIGTERM")

            nursery.start_soon(work)
            nursery.start_soon(watch)
    return status


async def _run(args: argparse.Namespace) -> int:
    from perf.run import Plan, run

    pin_self()
    limit = _raise_descriptor_limit()
    smoke: bool = args.smoke
    duration = args.duration or (SMOKE_DURATION if smoke else FULL_DURATION)
    wanted_idle = args.idle_connections or (SMOKE_IDLE_CONNECTIONS if smoke else IDLE_CONNECTIONS)
    # Each idle proxied connection costs the proxy two descriptors, and the hard limit cannot be raised here.
    idle = min(wanted_idle, (limit - _DESCRIPTOR_MARGIN) // 2)
    if idle < wanted_idle:
        _progress(f"idle: {idle} connections, not {wanted_idle}: the descriptor limit is {limit} (2 per pair)")
    # triomesh joins each mesh TLS connection to a socketpair (dataplane/tls/bridge.py): 4 descriptors per pair.
    mtls_idle = min(wanted_idle, (limit - _DESCRIPTOR_MARGIN) // MESH_TLS_DESCRIPTORS)
    if mtls_idle < wanted_idle and any(scenario.mtls and scenario.tool is Tool.IDLE for scenario in args.only):
        _progress(
            f"mtls_idle: {mtls_idle} connections, not {wanted_idle}: the descriptor limit is {limit} "
            f"({MESH_TLS_DESCRIPTORS} per mesh TLS pair in triomesh)"
        )
    out: Path = args.out
    plan = Plan(
        scenarios=tuple(args.only),
        peers=tuple(args.proxies),
        rounds=args.rounds or (1 if smoke else FULL_ROUNDS),
        load=Load(duration=duration, fixed_rate=args.rate, idle_connections=idle, mtls_idle_connections=mtls_idle),
        smoke=smoke,
        work_dir=_work_dir(out, "run"),
    )
    result = await run(plan, _progress)
    _write(result, out, smoke=smoke)
    return 0


async def _lab(args: argparse.Namespace) -> int:
    from perf.lab import run_lab

    pin_self()
    out: Path = args.out
    result = await run_lab(
        args.prefix, args.mode, args.rounds, args.duration, args.rate, _work_dir(out, "lab"), _progress
    )
    _write(result, out, smoke=False)
    return 0


async def _scaling(args: argparse.Namespace) -> int:
    from perf.scaling import ScalingResult, render_markdown, run_scaling

    _raise_descriptor_limit()
    out: Path = args.out
    smoke: bool = args.smoke
    rounds = args.rounds or (1 if smoke else FULL_ROUNDS)
    duration = args.duration or (SMOKE_DURATION if smoke else FULL_DURATION)
    result: ScalingResult = await run_scaling(rounds, duration, _work_dir(out, "scaling"), _progress)
    stem = _stem(out, smoke, result.started_at[:10], "scaling", result.machine.name)
    stem.with_suffix(".json").write_bytes(msgspec.json.format(msgspec.json.encode(result)) + b"\n")
    stem.with_suffix(".md").write_text(render_markdown(result))
    print(stem.with_suffix(".json"))
    print(stem.with_suffix(".md"))
    return 0


def _work_dir(out: Path, kind: str) -> Path:
    """Where a run keeps its configs and logs (ignored by git)."""
    return out / "tmp" / f"{kind}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"


def _stem(out: Path, smoke: bool, date: str, mode: str, machine: str) -> Path:
    """``<out>/<date>-<mode>-<machine>`` (smoke runs under tmp/), with -2, -3, ... for later runs that day."""
    directory = out / "tmp" if smoke else out
    directory.mkdir(parents=True, exist_ok=True)
    stem = directory / f"{date}-{mode}-{machine}"
    n = 2
    while stem.with_suffix(".json").exists():
        stem = directory / f"{date}-{mode}-{machine}-{n}"
        n += 1
    return stem


def _write(result: RunResult, out: Path, *, smoke: bool) -> None:
    stem = _stem(out, smoke, result.started_at[:10], result.settings.mode, result.machine.name)
    stem.with_suffix(".json").write_bytes(msgspec.json.format(msgspec.json.encode(result)) + b"\n")
    for path in [stem.with_suffix(".json"), *write_report(result, stem)]:
        print(path)


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _raise_descriptor_limit() -> int:
    """Soft limit up to the hard one (children inherit it); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard if hard != resource.RLIM_INFINITY else 1_048_576


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m perf", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="{run,lab,scaling,report}")

    r = sub.add_parser("run", help="every scenario x every proxy on loopback, in one interleaved run")
    _add_round_options(r, "every scenario")
    r.add_argument(
        "--only",
        type=_names(BY_NAME),
        default=list(SCENARIOS),
        metavar="SCENARIO,...",
        help=f"scenarios to run (default all: {','.join(BY_NAME)})",
    )
    r.add_argument(
        "--proxies",
        type=_names(PEER_BY_NAME),
        default=list(PEERS),
        metavar="PROXY,...",
        help=f"proxies to run (default all: {','.join(PEER_BY_NAME)})",
    )
    r.add_argument(
        "--idle-connections",
        type=_positive,
        metavar="N",
        help=f"idle connections held in the idle scenario (default {IDLE_CONNECTIONS}, capped by the descriptor limit)",
    )
    r.add_argument("--rate", type=_positive, default=FIXED_RATE, help="requests/s of the latency scenarios")

    lab = sub.add_parser(
        "lab", help="triomesh as a transparent sidecar: client pod -> outbound -> inbound -> server pod"
    )
    lab.add_argument("--mode", choices=("redirect", "tproxy"), default="redirect", help="interception mode")
    lab.add_argument(
        "--rounds", type=_positive, default=FULL_ROUNDS, help=f"interleaved rounds (default {FULL_ROUNDS})"
    )
    lab.add_argument("--duration", type=_positive, default=FULL_DURATION, metavar="S", help="seconds per load")
    lab.add_argument("--rate", type=_positive, default=FIXED_RATE, help="requests/s of the latency run")
    lab.add_argument("--prefix", type=_lab_prefix, default="tmpfbench", help="lab prefix (default tmpfbench)")
    lab.add_argument("--out", type=_absolute, default=RESULTS, help="results directory (default perf/results)")

    sc = sub.add_parser("scaling", help="one worker against two (triomesh --workers, Envoy --concurrency), all cores")
    _add_round_options(sc, "the scaling run")

    rep = sub.add_parser("report", help="re-render the markdown and chart of a run from its raw JSON")
    rep.add_argument("result", metavar="RESULT.json")
    return p


def _add_round_options(parser: argparse.ArgumentParser, what: str) -> None:
    """--smoke, --rounds, --duration and --out, shared by the interleaved runs."""
    parser.add_argument("--smoke", action="store_true", help=f"seconds, one round: proves {what} still works")
    parser.add_argument("--rounds", type=_positive, help=f"interleaved rounds (default {FULL_ROUNDS})")
    parser.add_argument("--duration", type=_positive, metavar="S", help=f"seconds per load (default {FULL_DURATION})")
    parser.add_argument("--out", type=_absolute, default=RESULTS, help="results directory (default perf/results)")


def _absolute(text: str) -> Path:
    # Absolute: the peers are started with their own working directories (nginx -p) and would misread it.
    return Path(text).resolve()


def _positive(text: str) -> int:
    # argparse names the flag in front of the message.
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


def _names(known: dict[str, T]) -> Callable[[str], list[T]]:
    def convert(text: str) -> list[T]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in known]
        if unknown or not names:
            what = ", ".join(map(repr, unknown)) or "nothing"
            raise argparse.ArgumentTypeError(f"unknown {what} (known: {', '.join(known)})")
        return [known[name] for name in names]

    return convert


def _lab_prefix(text: str) -> str:
    if not text.startswith("tmpf"):
        raise argparse.ArgumentTypeError(f"{text!r} must start with tmpf (the harness's own prefix)")
    from ctl.lab.topology import validate_prefix

    try:
        return validate_prefix(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
