"""The harness end to end in smoke mode (one short round, every scenario, every proxy), so it never rots.

It asserts that every scenario produced a number for every proxy that can take part, that the ones that cannot
say why, and that nothing it started is left running. It never asserts a speed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from perf.proxies import REPO
from perf.results import RunResult
from perf.scaling import PROXIES, WORKERS, ScalingResult
from perf.scenarios import BY_NAME, PEER_BY_NAME, PEERS, SCENARIOS, skip_reason
from tests.perf.conftest import need

pytestmark = pytest.mark.slow

SMOKE_TIMEOUT = 600  # seconds; the smoke run takes about a minute


def _run(argv: list[str], out: Path) -> RunResult:
    written = _perf(argv, out)
    assert {path.suffix for path in written} == {".json", ".md", ".png"}
    assert all(path.stat().st_size > 0 for path in written)
    result = msgspec.json.decode(next(p for p in written if p.suffix == ".json").read_bytes(), type=RunResult)
    assert next(p for p in written if p.suffix == ".png").read_bytes().startswith(b"\x89PNG")
    return result


def _perf(argv: list[str], out: Path) -> list[Path]:
    """Run ``python -m perf ARGV --out OUT``; the files it wrote."""
    done = subprocess.run(
        [sys.executable, "-m", "perf", *argv, "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [Path(line) for line in done.stdout.split()]


def _leftovers(marker: str) -> list[str]:
    """Command lines of live processes that mention ``marker`` (every config the run wrote lives there)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline:
                found.append(cmdline)
    return found


def _assert_complete(result: RunResult, scenarios: list[str], proxies: list[str]) -> None:
    samples = {(s.scenario, s.proxy): s for s in result.samples}
    assert set(samples) == {(scenario, proxy) for scenario in scenarios for proxy in proxies}
    for (name, proxy), sample in samples.items():
        assert sample.error is None, f"{name} {proxy}: {sample.error}"
        scenario = BY_NAME[name]
        peer = PEER_BY_NAME.get(proxy)
        if sample.skipped is not None:
            # Only what the proxy cannot do at all is skipped; a missing tool is a failure here.
            assert peer is not None and sample.skipped == skip_reason(peer, scenario), f"{name} {proxy}"
            continue
        wanted = {f.key for f in scenario.figures if peer is None or peer.is_process or not f.needs_process}
        assert set(sample.figures) == wanted, f"{name} {proxy}: {sample.figures}"
        assert all(value >= 0 for value in sample.figures.values()), f"{name} {proxy}: {sample.figures}"


def test_smoke_every_scenario_every_proxy(tmp_path: Path) -> None:
    for tool in ("envoy", "nginx", "haproxy", "wrk", "h2load", "iperf3", "taskset"):
        need(tool)
    result = _run(["run", "--smoke"], tmp_path)
    scenarios, proxies = [s.name for s in SCENARIOS], [p.name for p in PEERS]
    assert (result.settings.scenarios, result.settings.proxies) == (scenarios, proxies)
    assert result.settings.smoke and result.settings.rounds == 1
    _assert_complete(result, scenarios, proxies)
    skipped = {(s.scenario, s.proxy) for s in result.samples if s.skipped is not None}
    # The mTLS two-hop scenarios are configured for triomesh and Envoy only.
    mtls = {
        (name, proxy) for name in ("mtls_http1", "mtls_latency", "mtls_idle") for proxy in ("none", "nginx", "haproxy")
    }
    # So are the service scenarios (a proxy balancing over three endpoints).
    service = {(name, proxy) for name in ("service_http1", "service_latency") for proxy in ("none", "nginx", "haproxy")}
    assert skipped == {("idle", "none"), ("rest", "none"), *mtls, *service}
    assert set(result.machine.versions) >= {"triomesh", "envoy", "nginx", "haproxy", "wrk", "h2load", "iperf3"}
    report = (tmp_path / "tmp").glob("*.md")
    text = next(report).read_text()
    assert all(f"## {name}:" in text for name in scenarios)
    assert not _leftovers(str(tmp_path))


@pytest.mark.netns
@pytest.mark.usefixtures("require_netns")
def test_lab_smoke_sidecars(tmp_path: Path) -> None:
    prefix = f"tmpf{os.getpid() % 100_000}"
    result = _run(["lab", "--rounds", "1", "--duration", "1", "--prefix", prefix], tmp_path)
    assert result.settings.mode == "lab"
    _assert_complete(result, result.settings.scenarios, ["sidecars", "inbound"])
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert prefix not in namespaces
    assert not _leftovers(str(tmp_path))


def test_scaling_smoke_one_and_two_workers(tmp_path: Path) -> None:
    for tool in ("envoy", "nginx", "wrk", "taskset"):
        need(tool)
    written = _perf(["scaling", "--smoke"], tmp_path)
    result = msgspec.json.decode(next(p for p in written if p.suffix == ".json").read_bytes(), type=ScalingResult)
    assert {(s.proxy, s.workers) for s in result.samples} == {(p, w) for p in PROXIES for w in WORKERS}
    for sample in result.samples:
        assert sample.error is None, f"{sample.proxy} x{sample.workers}: {sample.error}"
        assert sample.rps > 0 and sample.cpu_us_per_req > 0
    report = next(p for p in written if p.suffix == ".md").read_text()
    assert report.count("| triomesh |") == len(WORKERS)
    assert not _leftovers(str(tmp_path))
