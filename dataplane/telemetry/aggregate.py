"""Merging the /metrics of several worker processes into one exposition.

Each worker counts its own connections; the proxy's metrics are their sum, series by series, so dashboards see
one proxy. A few gauges describe the process or the policy rather than count something, and are combined by
the rule that keeps their meaning (the oldest start time, the lowest generation still serving, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

_RULES: Final[dict[str, Callable[[Iterable[float]], float]]] = {
    "process_start_time_seconds": min,
    "process_max_fds": max,
    "triomesh_policy_generation": min,  # the oldest policy any worker still applies
    "triomesh_policy_file_present": min,
    "triomesh_policy_last_reload_success_timestamp_seconds": min,
    "triomesh_ready": min,  # ready only when every worker is
    "triomesh_draining": max,
    "triomesh_build_info": max,
    "triomesh_policy_info": max,
    "python_info": max,
    # Each worker loads --identity itself; the proxy is as good as its worst worker.
    "identity_cert_expiration_timestamp_seconds": min,
    "triomesh_identity_valid": min,
    "triomesh_identity_last_reload_success_timestamp_seconds": min,
    "triomesh_identity_info": max,
}


def merge_expositions(texts: Sequence[str], extra: Sequence[Metric] = ()) -> bytes:
    """The Prometheus text of the merged families (in first-seen order), plus ``extra`` families."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], list[float]]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(family.name, family.documentation, family.type)
                values[family.name] = {}
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                values[family.name].setdefault(key, []).append(sample.value)
    for name, family in families.items():
        for (sample_name, labels), found in values[name].items():
            rule = _RULES.get(sample_name, _RULES.get(name, sum))
            family.samples.append(Sample(sample_name, dict(labels), rule(found)))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed([*families.values(), *extra]))
    return generate_latest(registry)


class _Fixed(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def supervisor_families(configured: int, running: int, restarts: int) -> list[Metric]:
    """What only the supervisor knows: how many workers there should be, how many run, how often they died."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    workers = GaugeMetricFamily("triomesh_workers", "Worker processes, by state.", labels=["state"])
    workers.add_metric(["configured"], configured)
    workers.add_metric(["running"], running)
    return [
        workers,
        CounterMetricFamily("triomesh_worker_restarts", "Workers restarted after they died.", value=restarts),
    ]
