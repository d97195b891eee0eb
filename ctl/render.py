"""Turns admin documents into text for people (tables, key/value blocks) or JSON for programs. Pure."""

from __future__ import annotations

import datetime
from typing import Final

import msgspec

from ctl.table import Column, render_table
from ctl.units import format_bytes, format_duration
from dataplane.admin.schema import ConnectionInfo, ConnectionsReport, IdentityInfo, ReloadErrorInfo, StatusReport

CONNECTION_COLUMNS: Final = (
    Column("ID", right=True),
    Column("DIR"),
    Column("CLIENT"),
    Column("ORIGINAL DST"),
    Column("UPSTREAM"),
    Column("PROTO"),
    Column("MTLS PEER"),
    Column("REQS", right=True),
    Column("STATE"),
    Column("AGE", right=True),
    Column("->UP", right=True),
    Column("->CLIENT", right=True),
    Column("REASON"),
)
_DIRECTION: Final = {"inbound": "in", "outbound": "out"}  # short, so the address columns get the width
_NONE: Final = "-"


def to_json(document: msgspec.Struct) -> str:
    """The document as the proxy would serve it, indented for reading."""
    return msgspec.json.format(msgspec.json.encode(document), indent=2).decode()


def select_connections(report: ConnectionsReport, *, open_: bool, closed: bool) -> ConnectionsReport:
    """The report with the open or the recently closed list emptied (totals stay as the proxy counted)."""
    return msgspec.structs.replace(report, open=report.open if open_ else [], recent=report.recent if closed else [])


def render_connections(report: ConnectionsReport, *, now: float) -> str:
    """A summary line and one aligned row per connection: open ones (oldest first), then recently closed."""
    summary = (
        f"{len(report.open)} open, {len(report.recent)} recently closed"
        f" ({report.opened_total} opened, {report.closed_total} closed since start)"
    )
    conns = [*sorted(report.open, key=lambda conn: conn.id), *report.recent]
    if not conns:
        return f"{summary}\nno connections to show\n"
    rows = [_connection_row(conn, now) for conn in conns]
    return "\n".join([summary, "", *render_table(CONNECTION_COLUMNS, rows)]) + "\n"


def _connection_row(conn: ConnectionInfo, now: float) -> list[str]:
    # AGE is how long an open connection has been open, and how long a closed one lasted.
    end = now if conn.closed_at is None else conn.closed_at
    reason = conn.close_reason or _NONE
    if conn.errno:
        reason = f"{reason} ({conn.errno})"
    return [
        str(conn.id),
        _DIRECTION.get(conn.direction, conn.direction),
        conn.client,
        f"{conn.original_dst} ({conn.service})" if conn.service else conn.original_dst,  # a service: its endpoint
        conn.upstream or _NONE,
        _protocol(conn),
        conn.client_id or conn.server_id or _NONE,  # the verified identity of the proxy at the other end
        str(conn.requests) if conn.requests else _NONE,
        conn.state,
        format_duration(end - conn.opened_at),
        format_bytes(conn.bytes_to_upstream),
        format_bytes(conn.bytes_to_client),
        reason,
    ]


def _protocol(conn: ConnectionInfo) -> str:
    """What detection found, with what explains it: the TLS server name, or why it fell back to opaque."""
    if conn.sni is not None:
        return f"{conn.protocol}({conn.sni})"
    if conn.protocol == "opaque" and conn.detect_result not in (None, "not_http"):
        return f"opaque({conn.detect_result})"  # server_first, read_timeout, client_eof, ...
    return conn.protocol


def render_status(report: StatusReport, *, now: float, not_ready_because: str = "") -> str:
    """Readiness first (what an operator checks), then policy, reload health, listeners and load.

    ``not_ready_because`` is the proxy's own /ready text, shown when it is not ready.
    """
    ready = "yes" if report.ready else "no"
    if report.draining:
        ready += " (draining)"
    if not report.ready and not_ready_because:
        ready += f" ({not_ready_because})"
    policy_name = report.policy_name or "(unnamed)"
    fields: list[tuple[str, str]] = [
        ("ready", ready),
        ("proxy", f"mesh-proxy {report.version}, pid {report.pid}, {report.workers} worker(s)"),
        ("uptime", f"{format_duration(report.uptime_seconds)} (since {_timestamp(report.started_at)})"),
        ("policy", f"{policy_name} version {report.policy_version or _NONE}"),
        ("generation", str(report.policy_generation)),
        ("source", report.policy_source or _NONE),
        ("last reload", _reload_error(report.last_reload_error, now)),
        ("connections", f"{report.connections_open} open"),
    ]
    if report.identity is not None:
        fields[-1:-1] = [
            ("identity", _identity(report.identity, now)),
            ("id reload", _reload_error(report.identity.last_reload_error, now)),
        ]
    lines = [f"{key + ':':<13} {value}" for key, value in fields]
    lines.append("listeners:")
    listeners = [[listener.name, listener.address] for listener in report.listeners]
    lines.extend(f"  {line}" for line in render_table([Column("NAME"), Column("ADDRESS")], listeners))
    return "\n".join(lines) + "\n"


def _identity(info: IdentityInfo, now: float) -> str:
    """The SVID in use and until when; when the proxy judges it not valid, why (as /ready says it)."""
    if info.spiffe_id is None or info.not_after is None:
        return f"none from {info.directory} ({info.problem or 'not loaded yet'})"
    line = f"{info.spiffe_id}, serial {info.serial or _NONE}, valid until {_timestamp(info.not_after)}"
    if info.valid:
        return f"{line} (in {format_duration(info.not_after - now)})"
    return f"NOT VALID: {line} ({info.problem or 'no reason given'})"


def _reload_error(error: ReloadErrorInfo | None, now: float) -> str:
    if error is None:
        return "ok"
    age = format_duration(now - error.at)
    lines = [f"FAILED {age} ago ({_timestamp(error.at)}) from {error.source}: {error.message}"]
    lines.extend(f"{'':13}   {problem.path}: {problem.message}" for problem in error.problems)
    return "\n".join(lines)


def _timestamp(unix: float) -> str:
    return datetime.datetime.fromtimestamp(unix, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
