"""One interleaved run: for each round, for each scenario, every proxy in turn (A B C ... A B C ...).

Interleaving spreads whatever drifts during a run (thermal state, other work on the machine) over all proxies
alike, so ratios taken within the run stay fair. The upstream nginx runs for the whole run; each measurement
starts its own proxy (and iperf3 server) and stops it before the next.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import msgspec

from perf.machine import describe
from perf.measure import Load, Upstreams, measure
from perf.mesh_identities import provision
from perf.mtls_peers import MeshIdentities
from perf.parse import ToolOutputError
from perf.processes import BenchError, Services
from perf.proxies import TOOLS, missing_tool, start_upstream
from perf.results import RunResult, RunSettings, Sample
from perf.scenarios import Peer, Scenario, Tool, layer_for, skip_reason

_TOOLS_FOR: Final = {
    Tool.WRK: ("wrk",),
    Tool.WRK_FIXED_RATE: ("wrk",),
    Tool.H2LOAD: ("h2load",),
    Tool.IPERF3: ("iperf3",),
    Tool.IDLE: (),
    Tool.REST: (),
}


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    scenarios: tuple[Scenario, ...]
    peers: tuple[Peer, ...]
    rounds: int
    load: Load
    smoke: bool
    work_dir: Path
    """Configs and logs of every process of the run (kept for post-mortems, never committed)."""


def missing_tools(plan: Plan) -> list[str]:
    """Load generators and the upstream the plan needs that this machine lacks (Debian package names)."""
    needed = {"nginx", "taskset"}
    for scenario in plan.scenarios:
        needed.update(_TOOLS_FOR[scenario.tool])
    return sorted({TOOLS[tool] for tool in needed if shutil.which(tool) is None})


async def run(plan: Plan, progress: Callable[[str], None]) -> RunResult:
    missing = missing_tools(plan)
    if missing:
        raise BenchError(f"missing Debian packages: {', '.join(missing)} (`make bench` installs them)")
    machine = await describe()
    started = _now()
    plan.work_dir.mkdir(parents=True, exist_ok=True)
    samples: list[Sample] = []
    async with Services(plan.work_dir) as upstream:
        http1, h2c, _ = await start_upstream(upstream, plan.work_dir)
        upstreams = Upstreams(http1, h2c)
        identities = await _identities(plan)
        for round_no in range(1, plan.rounds + 1):
            for scenario in plan.scenarios:
                for peer in plan.peers:
                    sample = await _one(plan, round_no, scenario, peer, upstreams, identities)
                    samples.append(sample)
                    progress(_describe(plan, sample))
    return RunResult(
        machine=machine,
        settings=RunSettings(
            mode="loopback",
            smoke=plan.smoke,
            rounds=plan.rounds,
            duration_s=plan.load.duration,
            scenarios=[s.name for s in plan.scenarios],
            proxies=[p.name for p in plan.peers],
            idle_connections=plan.load.idle_connections,
            mtls_idle_connections=plan.load.mtls_idle_connections,
            fixed_rate=plan.load.fixed_rate,
        ),
        started_at=started,
        finished_at=_now(),
        samples=samples,
    )


async def _identities(plan: Plan) -> MeshIdentities | None:
    """The mTLS scenarios' CA and SVIDs, issued once per run when the plan has an mTLS measurement."""
    if not any(scenario.mtls and peer.mtls for scenario in plan.scenarios for peer in plan.peers):
        return None
    return await provision(plan.work_dir / "identities")


async def _one(
    plan: Plan,
    round_no: int,
    scenario: Scenario,
    peer: Peer,
    upstreams: Upstreams,
    identities: MeshIdentities | None,
) -> Sample:
    layer = layer_for(peer, scenario)
    sample = Sample(
        round=round_no, scenario=scenario.name, proxy=peer.name, layer=layer.value, load_1m=os.getloadavg()[0]
    )
    skipped = skip_reason(peer, scenario) or missing_tool(peer)
    if skipped is not None:
        return msgspec.structs.replace(sample, skipped=skipped)
    run_dir = plan.work_dir / f"r{round_no}-{scenario.name}-{peer.name}"
    try:
        figures = await measure(scenario, peer, layer, upstreams, plan.load, run_dir, identities)
    except (BenchError, ToolOutputError) as exc:
        return msgspec.structs.replace(sample, error=str(exc))
    return msgspec.structs.replace(sample, figures=figures)


def _describe(plan: Plan, sample: Sample) -> str:
    head = f"[{sample.round}/{plan.rounds}] {sample.scenario:<12} {sample.proxy:<9}"
    if sample.skipped is not None:
        return f"{head} skipped: {sample.skipped}"
    if sample.error is not None:
        return f"{head} FAILED: {sample.error}"
    return head + " " + "  ".join(f"{key}={value:,.3f}" for key, value in sample.figures.items())


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
