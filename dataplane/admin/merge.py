"""Merging the admin documents of several worker processes into one view of the proxy (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from dataplane.admin.schema import ConnectionsReport, StatusReport
from dataplane.connections import RECENT_LIMIT


def merge_connections(reports: Sequence[ConnectionsReport]) -> ConnectionsReport:
    open_ = sorted((c for r in reports for c in r.open), key=lambda c: (c.opened_at, c.id))
    recent = sorted((c for r in reports for c in r.recent), key=lambda c: (c.closed_at or 0.0, c.id), reverse=True)
    return ConnectionsReport(
        open=open_,
        recent=recent[:RECENT_LIMIT],
        opened_total=sum(r.opened_total for r in reports),
        closed_total=sum(r.closed_total for r in reports),
    )


def merge_status(
    statuses: Sequence[StatusReport], *, workers: int, pid: int, started_at: float, uptime: float, draining: bool
) -> StatusReport:
    """Ready only when every worker answers ready; the policy shown is the oldest generation still running."""
    if not statuses:
        raise ValueError("no worker answered")
    oldest = min(statuses, key=lambda s: s.policy_generation)
    return StatusReport(
        ready=len(statuses) == workers and all(s.ready for s in statuses) and not draining,
        draining=draining or any(s.draining for s in statuses),
        version=oldest.version,
        pid=pid,
        started_at=started_at,
        uptime_seconds=uptime,
        policy_name=oldest.policy_name,
        policy_version=oldest.policy_version,
        policy_generation=oldest.policy_generation,
        policy_source=oldest.policy_source,
        last_reload_error=next((s.last_reload_error for s in statuses if s.last_reload_error), None),
        listeners=oldest.listeners,
        connections_open=sum(s.connections_open for s in statuses),
        workers=workers,
        # Each worker watches the identity itself: show one that has a problem, if any does.
        identity=next((s.identity for s in statuses if s.identity and not s.identity.valid), oldest.identity),
    )
