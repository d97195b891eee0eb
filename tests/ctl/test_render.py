from __future__ import annotations

import msgspec

from ctl.render import CONNECTION_COLUMNS, render_connections, render_status, select_connections, to_json
from dataplane.admin.schema import ConnectionsReport, StatusReport
from tests.ctl.admin_standin import NOW, sample_connections, sample_status


def _table(text: str) -> list[str]:
    """The header and row lines of a rendered connections table (after the summary and blank line)."""
    lines = text.splitlines()
    return lines[lines.index("") + 1 :]


def test_connections_table_has_every_column_in_order() -> None:
    header = _table(render_connections(sample_connections(), now=NOW))[0]
    titles = [column.title for column in CONNECTION_COLUMNS]
    positions = [header.index(title) for title in titles]
    assert positions == sorted(positions)
    assert " ".join(titles) == (
        "ID DIR CLIENT ORIGINAL DST UPSTREAM PROTO MTLS PEER REQS STATE AGE ->UP ->CLIENT REASON"
    )


def test_connections_rows_are_aligned_under_their_headers() -> None:
    header, *rows = _table(render_connections(sample_connections(), now=NOW))
    # Left-aligned columns start where their title starts, whatever the address length (IPv6 included).
    for title in ("CLIENT", "ORIGINAL DST", "PROTO", "MTLS PEER", "STATE"):
        start = header.index(title)
        for row in rows:
            assert row[start - 2 : start] == "  ", (title, row)
            assert row[start] != " ", (title, row)
    # Right-aligned columns end where their title ends.
    for title in ("REQS", "AGE", "->UP", "->CLIENT"):
        end = header.index(title) + len(title)
        for row in rows:
            assert row[end - 1] != " " and row[end : end + 2] == "  ", (title, row)


def test_connections_rows_show_humane_units_and_full_addresses() -> None:
    text = render_connections(sample_connections(), now=NOW)
    header, first, second, closed = _table(text)
    assert text.splitlines()[0] == "2 open, 1 recently closed (12 opened, 10 closed since start)"
    # Open connections come oldest id first, then the recently closed ones.
    assert first.split()[:2] == ["9", "in"]
    assert "[fd00:7472:696f::11]:51234" in first and "[fd00:7472:696f::12]:8080" in first
    assert " spiffe://cluster.local/ns/shop/sa/web " in first  # the verified mesh client
    assert "3m4s" in first and "5.0 MiB" in first and "12 B" in first and "client_half_closed" in first
    assert second.split()[:2] == ["12", "out"] and "12s" in second and "1.5 KiB" in second and "300 B" in second
    # A closed connection shows how long it lasted, no upstream, and why it closed.
    assert closed.split()[:9] == [
        "11",
        "out",
        "198.18.7.11:40400",
        "198.18.7.13:9090",
        "-",
        "opaque",
        "-",  # not over mesh mTLS
        "-",  # no HTTP requests on an opaque connection
        "closed",
    ]
    assert "350ms" in closed and closed.endswith("upstream_refused (ECONNREFUSED)")
    assert header.endswith("REASON") and first.endswith("-")


def test_empty_table_says_so() -> None:
    empty = ConnectionsReport(open=[], recent=[], opened_total=0, closed_total=0)
    assert render_connections(empty, now=NOW) == (
        "0 open, 0 recently closed (0 opened, 0 closed since start)\nno connections to show\n"
    )


def test_select_connections_keeps_totals() -> None:
    report = sample_connections()
    only_open = select_connections(report, open_=True, closed=False)
    only_closed = select_connections(report, open_=False, closed=True)
    assert [c.id for c in only_open.open] == [12, 9] and only_open.recent == []
    assert only_closed.open == [] and [c.id for c in only_closed.recent] == [11]
    assert only_open.opened_total == only_closed.opened_total == 12


def test_json_round_trips_to_the_same_report() -> None:
    report = sample_connections()
    assert msgspec.json.decode(to_json(report), type=ConnectionsReport) == report
    status = sample_status()
    assert msgspec.json.decode(to_json(status), type=StatusReport) == status


def test_status_shows_readiness_policy_uptime_and_listeners() -> None:
    text = render_status(sample_status(), now=NOW)
    lines = text.splitlines()
    assert lines[0] == "ready:        yes"
    assert "uptime:       1h2m (since 2023-11-14 21:11:17Z)" in lines
    assert "policy:       demo version 1" in lines
    assert "generation:   3" in lines
    assert "source:       /etc/triomesh/policy.yaml" in lines
    assert "last reload:  ok" in lines
    assert "connections:  2 open" in lines
    assert lines[-4:] == [
        "listeners:",
        "  NAME      ADDRESS",
        "  outbound  127.0.0.1:15001",
        "  inbound   [::]:15006",
    ]


def test_status_lists_every_reload_problem() -> None:
    text = render_status(sample_status(ready=False, reload_error=True), now=NOW)
    assert "ready:        no" in text
    assert "last reload:  FAILED 5.0s ago (2023-11-14 22:13:15Z) from /etc/triomesh/policy.yaml: 2 problems" in text
    assert "inbound.ports[0].port: must be <= 65535" in text
    assert "timeouts.idle: invalid duration '5 minutes'" in text


def test_the_proto_column_explains_detection() -> None:
    report = sample_connections()
    base = report.recent[0]
    detected = [
        msgspec.structs.replace(base, id=20, protocol="http1", detect_result="http/1", detect_seconds=0.0001),
        msgspec.structs.replace(base, id=21, protocol="tls", detect_result="tls", sni="api.example.com"),
        msgspec.structs.replace(base, id=22, protocol="opaque", detect_result="server_first", detect_seconds=0.01),
        msgspec.structs.replace(base, id=23, protocol="opaque", detect_result="not_http"),
    ]
    rows = _table(render_connections(msgspec.structs.replace(report, open=[], recent=detected), now=NOW))[1:]
    assert [row.split()[5] for row in rows] == ["http1", "tls(api.example.com)", "opaque(server_first)", "opaque"]
    assert '"sni": "api.example.com"' in to_json(msgspec.structs.replace(report, recent=detected))
