"""The report of a run: a markdown file with every figure and its ratio to Envoy's, and a PNG chart.

``render_markdown`` is pure (the tests read it); ``write_report`` also draws the chart with matplotlib.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from perf.peers import Layer
from perf.results import Cell, RunResult, RunSettings, cells, ratio
from perf.scenarios import BASELINE, BY_NAME, PEER_BY_NAME, Figure, Scenario

TIMES: Final = "\u00d7"  # the multiplication sign of "x0.86"
_L4_NAMES: Final = {
    "none": "no proxy",
    "triomesh": "triomesh",
    "envoy": "Envoy tcp_proxy",
    "nginx": "nginx stream",
    "haproxy": "HAProxy mode tcp",
}
_L7_NAMES: Final = {
    "none": "no proxy",
    "triomesh": "triomesh HTTP",
    "envoy": "Envoy HTTP",
    "nginx": "nginx proxy_pass",
    "haproxy": "HAProxy mode http",
}
_LAB_NAMES: Final = {
    "sidecars": "two hops: client pod -> outbound sidecar -> inbound sidecar -> server pod",
    "inbound": "one hop: client (exempt UID) -> inbound sidecar -> server pod",
}
_COLOURS: Final = {
    "sidecars": "#d95f02",
    "inbound": "#fdae6b",
    "none": "#9e9e9e",
    "triomesh": "#d95f02",
    "envoy": "#7570b3",
    "nginx": "#1b9e77",
    "haproxy": "#e7298a",
}
_MTLS_KIND: Final = (
    "two hops of each proxy, TLS 1.3 mTLS between them (P-256 SVIDs, client certificate required, the peer's "
    "SPIFFE ID matched), both hops on core 0; CPU and RSS summed over both hops, idle memory per hop"
)
_SERVICE_KIND: Final = (
    "one proxy balancing each request over three nginx endpoints (triomesh: P2C over peak-EWMA; Envoy: "
    "LEAST_REQUEST, P2C), connect failures retried twice, ejection after 7 consecutive failures; the endpoint "
    "columns are each endpoint's share of the requests, as counted by the endpoints"
)
_FOOTNOTE: Final = (
    "† relayed as bytes (L4) in an HTTP scenario while the peers parse HTTP (L7): not like for like. triomesh "
    "proxies both at L7 (detection, then its HTTP/1.1 or HTTP/2 proxy; h2c stays h2c to the upstream, where the "
    "peers translate it to HTTP/1.1)."
)


def proxy_label(proxy: str, layer: str, scenario_layer: str | None = None) -> str:
    """How a proxy is named in a table: by the layer it ran at (marked † when that is L4 in an L7 scenario)."""
    if proxy in _LAB_NAMES:
        return _LAB_NAMES[proxy]
    if scenario_layer == Layer.L7.value and layer == Layer.L4.value and proxy != "none":
        return f"{_L4_NAMES.get(proxy, proxy)} (L4 relay) †"
    return (_L7_NAMES if layer == Layer.L7.value else _L4_NAMES).get(proxy, proxy)


def format_value(figure: Figure, value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.{figure.digits}f}"


def format_ratio(value: float | None) -> str:
    return "" if value is None else f" ({TIMES}{value:.2f})"


def render_markdown(result: RunResult, chart_name: str | None = None) -> str:
    table = cells(result.samples)
    settings = result.settings
    scenarios = [BY_NAME[name] for name in settings.scenarios if name in BY_NAME]
    lines = [f"# triomesh benchmark: {settings.mode}, {result.started_at[:10]}, {result.machine.cpu}", ""]
    if settings.smoke:
        lines += ["**Smoke run**: one short round to prove every scenario works. Its numbers mean nothing.", ""]
    lines += _machine(result) + _method(result)
    l7 = [s for s in scenarios if s.layer is Layer.L7 and not s.mtls and not s.service]
    l4 = [s for s in scenarios if s.layer is Layer.L4 and not s.mtls]
    mtls = [s for s in scenarios if s.mtls]
    service = [s for s in scenarios if s.service]
    if settings.mode == "lab":
        lines += ["## Summary: triomesh as a transparent sidecar (no Envoy in the lab: no ratios)", ""]
        lines += [*_summary(scenarios, settings.proxies, table, mark_l4=False), ""]
    elif l7:
        lines += ["## Summary, HTTP scenarios: every proxy at L7 where it can († relayed as bytes)", ""]
        lines += [*_summary(l7, settings.proxies, table), "", _FOOTNOTE, ""]
    if l4 and settings.mode != "lab":
        lines += ["## Summary, TCP scenarios: every proxy at L4 (like for like)", ""]
        lines += [*_summary(l4, settings.proxies, table), ""]
    if mtls and settings.mode != "lab":
        pairs = [p for p in settings.proxies if p in PEER_BY_NAME and PEER_BY_NAME[p].mtls]
        lines += [f"## Summary, mTLS two hops: {_MTLS_KIND}", ""]
        lines += [*_summary(mtls, pairs, table, mark_l4=False), ""]
    if service and settings.mode != "lab":
        balancing = [p for p in settings.proxies if p in PEER_BY_NAME and PEER_BY_NAME[p].services]
        lines += [f"## Summary, a service of three endpoints: {_SERVICE_KIND}", ""]
        lines += [*_summary(service, balancing, table, mark_l4=False), ""]
    if chart_name is not None:
        lines += [f"![headline figures]({chart_name})", ""]
    for scenario in scenarios:
        lines += _section(scenario, settings.proxies, table, lab=settings.mode == "lab")
    return "\n".join(lines).rstrip() + "\n"


def _machine(result: RunResult) -> list[str]:
    m = result.machine
    rows = [
        ("CPU", f"{m.cpu}, {m.cores} cores"),
        ("memory", f"{m.memory_gib:g} GiB"),
        ("kernel", m.kernel),
        ("OS", m.os),
        ("Python", m.python),
        *((name, f"`{version}`") for name, version in m.versions.items()),
    ]
    return ["## Machine", "", "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), ""]


def _method(result: RunResult) -> list[str]:
    s = result.settings
    rounds = (
        f"{s.rounds} interleaved round(s) (every configuration in turn within each scenario) of {s.duration_s} s "
        "per load; medians over the rounds."
    )
    when = f"Started {result.started_at}, finished {result.finished_at}." + _load(result)
    if s.mode == "lab":
        return [
            "## Method",
            "",
            f"In the network-namespace lab (two pods, `--mode {s.lab_mode}`): both sidecars pinned to core 0, the "
            "load generator and the upstream (nginx, one worker, keep-alive, a 64-byte body; iperf3 for bulk) on "
            f"core 1. {rounds} CPU is summed over both sidecars. Memory at rest is read between loads. "
            f"Latency scenario: {s.fixed_rate:,} requests/s. {when}",
            "",
        ]
    return [
        "## Method",
        "",
        "On loopback: each proxy pinned to core 0 with one worker; the load generator, the upstream (nginx, one "
        "worker, keep-alive, a 64-byte body; iperf3 for bulk) and the harness on core 1. Each measurement starts a "
        f"fresh proxy. {rounds} Idle scenario: {s.idle_connections:,} connections{_mtls_idle(s)}. Latency scenarios: "
        f"{s.fixed_rate:,} requests/s.{_service_endpoints(s)} {when}",
        "",
        f"Every figure is followed by its ratio to Envoy's figure in the same scenario of this run ({TIMES}1.00 = "
        "Envoy). For req/s and GB/s higher is better; for latency, CPU and memory lower is better. "
        "docs/benchmarks.md explains each scenario and the caveats.",
        "",
    ]


def _service_endpoints(settings: RunSettings) -> str:
    if not any(name in BY_NAME and BY_NAME[name].service for name in settings.scenarios):
        return ""
    return " Service scenarios: three such nginx upstreams (three processes, on core 1) are the endpoints."


def _mtls_idle(settings: RunSettings) -> str:
    if "mtls_idle" not in settings.scenarios:
        return ""
    return f" ({settings.mtls_idle_connections:,} in mtls_idle, through both hops)"


def _load(result: RunResult) -> str:
    """The 1-minute load average the measurements started at (min, median, max), when the run recorded it."""
    loads = sorted(s.load_1m for s in result.samples if s.load_1m is not None)
    if not loads:
        return ""
    median = loads[len(loads) // 2]
    return (
        f" 1-minute load average as each measurement started: {loads[0]:.2f} to {loads[-1]:.2f} "
        f"(median {median:.2f}; {result.machine.cores} cores)."
    )


def _summary(
    scenarios: list[Scenario], proxies: list[str], table: dict[tuple[str, str], Cell], *, mark_l4: bool = True
) -> list[str]:
    header = ["proxy", *(f"{s.name}: {s.headline.label}" for s in scenarios)]
    lines = [_row(header), _row(["---", *("---:" for _ in scenarios)])]
    for proxy in proxies:
        row = [PEER_BY_NAME[proxy].title if proxy in PEER_BY_NAME else proxy_label(proxy, "")]
        for scenario in scenarios:
            text = _cell_text(scenario, scenario.headline, proxy, table)
            cell = table.get((scenario.name, proxy))
            l4_in_l7 = mark_l4 and cell is not None and scenario.layer is Layer.L7 and cell.layer == Layer.L4.value
            row.append(f"{text} †" if l4_in_l7 and text else text)
        lines.append(_row(row))
    return lines


def _section(
    scenario: Scenario, proxies: list[str], table: dict[tuple[str, str], Cell], *, lab: bool = False
) -> list[str]:
    if lab:
        kind = "triomesh sidecars in the lab, relaying at L4"
    elif scenario.mtls:
        kind = f"{_MTLS_KIND}; the hops as {scenario.layer.value} proxies"
    elif scenario.service:
        kind = _SERVICE_KIND
    elif scenario.layer is Layer.L7:
        kind = "peers as L7 (HTTP) proxies"
    else:
        kind = "peers as L4 (TCP) proxies"
    lines = [f"## {scenario.name}: {scenario.title}", "", f"_{kind}_", ""]
    lines.append(_row(["proxy", *(f.label for f in scenario.figures), "rounds"]))
    lines.append(_row(["---", *("---:" for _ in scenario.figures), "---:"]))
    notes: list[str] = []
    for proxy in proxies:
        cell = table.get((scenario.name, proxy))
        if cell is None:
            continue
        label = proxy_label(proxy, cell.layer, scenario.layer.value)
        if scenario.mtls and proxy in PEER_BY_NAME:
            label = f"{PEER_BY_NAME[proxy].title} → {PEER_BY_NAME[proxy].title}"
        if cell.skipped is not None:
            lines.append(_row([label, *("skipped" for _ in scenario.figures), "0"]))
            notes.append(f"- {label}: skipped: {cell.skipped}")
            continue
        values = [_cell_text(scenario, figure, proxy, table) for figure in scenario.figures]
        lines.append(_row([label, *values, str(cell.rounds)]))
        notes += [f"- {label}: failed: {error}" for error in cell.errors]
    return [*lines, "", *notes, *([""] if notes else [])]


def _cell_text(scenario: Scenario, figure: Figure, proxy: str, table: dict[tuple[str, str], Cell]) -> str:
    cell = table.get((scenario.name, proxy))
    if cell is None:
        return ""
    if cell.skipped is not None:
        return "skipped"
    if cell.rounds == 0:
        return "failed"
    value = cell.medians.get(figure.key)
    base = table.get((scenario.name, BASELINE))
    baseline = base.medians.get(figure.key) if base is not None else None
    if value is None or not figure.compared:
        return format_value(figure, value)
    return format_value(figure, value) + format_ratio(ratio(value, baseline))


def _row(cells_: list[str]) -> str:
    return "| " + " | ".join(cells_) + " |"


def write_report(result: RunResult, stem: Path) -> list[Path]:
    """Writes ``<stem>.md`` and ``<stem>.png``; returns their paths."""
    chart = stem.with_suffix(".png")
    markdown = stem.with_suffix(".md")
    draw_chart(result, chart)
    markdown.write_text(render_markdown(result, chart.name))
    return [markdown, chart]


def draw_chart(result: RunResult, path: Path) -> None:
    """One panel per scenario: each proxy's headline median, labelled with its ratio to Envoy's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = cells(result.samples)
    lab = result.settings.mode == "lab"
    scenarios = [BY_NAME[name] for name in result.settings.scenarios if name in BY_NAME]
    columns = min(5, max(1, len(scenarios)))
    rows = (len(scenarios) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(scenarios) :]:
        ax.set_visible(False)
    for ax, scenario in zip(axes.flat, scenarios, strict=False):
        figure = scenario.headline
        names, values, colours, notes = [], [], [], []
        base = table.get((scenario.name, BASELINE))
        baseline = base.medians.get(figure.key) if base is not None else None
        for proxy in result.settings.proxies:
            cell = table.get((scenario.name, proxy))
            value = cell.medians.get(figure.key) if cell is not None else None
            if value is None:
                continue
            l4_in_l7 = lab is False and scenario.layer is Layer.L7 and cell is not None and cell.layer == "L4"
            names.append(f"{proxy} (L4)" if l4_in_l7 else proxy)
            values.append(value)
            colours.append(_COLOURS.get(proxy, "#666666"))
            r = ratio(value, baseline)
            notes.append("" if r is None else f"{TIMES}{r:.2f}")
        bars = ax.bar(names, values, color=colours)
        ax.bar_label(bars, labels=notes, fontsize=7)
        arrow = "higher is better" if figure.higher_is_better else "lower is better"
        ax.set_title(f"{scenario.name} ({scenario.layer.value})\n{figure.label}, {arrow}", fontsize=9)
        ax.tick_params(axis="x", labelrotation=45, labelsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.margins(y=0.15)
    smoke = " (smoke run: numbers mean nothing)" if result.settings.smoke else ""
    fig.suptitle(
        f"triomesh vs peers, {result.settings.mode}, {result.started_at[:10]}, {result.machine.cpu} "
        f"x{result.machine.cores}; medians of {result.settings.rounds} round(s){smoke}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
