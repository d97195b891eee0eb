"""A run's raw samples, their medians and the ratios to Envoy. Pure: the report and the tests read these.

A sample is one (round, scenario, proxy) measurement: figures, or why it was skipped, or the error it hit.
Medians are taken per figure over the rounds that produced it; a ratio divides a proxy's median by Envoy's
median of the same figure in the same run, so machines and runs never mix.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable

import msgspec


class Machine(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    """Short slug for file names, e.g. ``amd-epyc-2c``."""
    cpu: str
    cores: int
    memory_gib: float
    kernel: str
    os: str
    python: str
    versions: dict[str, str]
    """Every peer and tool, as each reports itself, plus triomesh's commit."""


class RunSettings(msgspec.Struct, frozen=True, kw_only=True):
    mode: str
    """``loopback`` or ``lab``."""
    smoke: bool
    rounds: int
    duration_s: int
    scenarios: list[str]
    proxies: list[str]
    idle_connections: int
    mtls_idle_connections: int = 0
    fixed_rate: int
    lab_mode: str = ""
    """The lab's interception mode (redirect or tproxy); empty on loopback."""


class Sample(msgspec.Struct, frozen=True, kw_only=True):
    round: int
    scenario: str
    proxy: str
    layer: str
    """L7 or L4: what the proxy ran as."""
    figures: dict[str, float] = {}
    skipped: str | None = None
    error: str | None = None
    load_1m: float | None = None
    """The machine's 1-minute load average as the measurement started (other work shows up here)."""


class RunResult(msgspec.Struct, frozen=True, kw_only=True):
    machine: Machine
    settings: RunSettings
    started_at: str
    finished_at: str
    samples: list[Sample]


class Cell(msgspec.Struct, frozen=True, kw_only=True):
    """One proxy in one scenario after the rounds: medians, or why there are none."""

    layer: str
    medians: dict[str, float] = {}
    rounds: int = 0
    """How many rounds produced figures."""
    skipped: str | None = None
    errors: list[str] = []


def cells(samples: Iterable[Sample]) -> dict[tuple[str, str], Cell]:
    """(scenario, proxy) -> Cell. A cell with at least one good round has medians; errors are kept either way."""
    grouped: dict[tuple[str, str], list[Sample]] = {}
    for sample in samples:
        grouped.setdefault((sample.scenario, sample.proxy), []).append(sample)
    result: dict[tuple[str, str], Cell] = {}
    for key, group in grouped.items():
        good = [s for s in group if s.skipped is None and s.error is None]
        values: dict[str, list[float]] = {}
        for sample in good:
            for figure, value in sample.figures.items():
                values.setdefault(figure, []).append(value)
        skipped = next((s.skipped for s in group if s.skipped is not None), None)
        result[key] = Cell(
            layer=group[0].layer,
            medians={figure: statistics.median(vs) for figure, vs in values.items()},
            rounds=len(good),
            skipped=skipped,
            errors=[s.error for s in group if s.error is not None],
        )
    return result


def ratio(value: float | None, baseline: float | None) -> float | None:
    """``value / baseline``; None when either is missing or the baseline is 0."""
    if value is None or baseline is None or baseline == 0:
        return None
    return value / baseline
