"""Picking lines out of a Prometheus text exposition (for the demo's metrics excerpt). Pure."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def metric_name(line: str) -> str:
    """The family-level name of a sample line: ``tcp_open_total{...} 3`` -> ``tcp_open_total``."""
    return line.split("{", 1)[0].split(" ", 1)[0]


def excerpt(
    text: str, families: Iterable[str], mentioning: Sequence[str] = (), *, excluding: Sequence[str] = ()
) -> list[str]:
    """Sample lines of ``families`` (no comments) without any of ``excluding``; with ``mentioning``, only
    lines containing one of them.

    Falls back to every line of the families when none mentions anything, so an unexpected label layout still
    shows something rather than nothing.
    """
    wanted = set(families)
    samples = [
        line
        for line in text.splitlines()
        if line
        and not line.startswith("#")
        and metric_name(line) in wanted
        and not any(unwanted in line for unwanted in excluding)
    ]
    if not mentioning:
        return samples
    matching = [line for line in samples if any(needle in line for needle in mentioning)]
    return matching or samples
