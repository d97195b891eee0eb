"""``meshctl lab demo`` (what ``make demo`` runs): up (every pod with its own identity, strict mTLS between the
proxies unless ``--no-mtls``), traffic through the proxies (an opaque server-speaks-first protocol and HTTP/1.1,
each detected), tables, metrics, a rotation of every pod's SVID under the same traffic, down.

The lab is always torn down, also on errors and Ctrl-C. A failed exchange is reported and the demo goes on,
so the connection tables and metrics still show what the proxies saw; the exit status says whether every
exchange worked.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final, TextIO

import trio

from ctl.client import AdminClient
from ctl.errors import CtlError
from ctl.lab.lab import Lab, Pod
from ctl.lab.rotate import rotate
from ctl.lab.talk import http_get, talk
from ctl.lab.topology import APP_PORT, DEFAULT_PREFIX, HTTP_PORT, Mode
from ctl.metrics_text import excerpt
from ctl.render import render_connections

# Linkerd's TCP families (docs: reference/anchors.md c1), which the proxy reuses so dashboards work.
METRIC_FAMILIES: Final = (
    "tcp_open_total",
    "tcp_close_total",
    "tcp_read_bytes_total",
    "tcp_write_bytes_total",
)
HTTP_METRIC_FAMILIES: Final = ("request_total", "response_total")  # Linkerd's HTTP families
HTTP_PATHS: Final = ("/hello", "/again")  # two requests on one kept-alive connection
ROUTES: Final = (("a", "b"), ("b", "c"), ("c", "a"))  # each pod is once a client and once a server
DEMO_PODS: Final = 3
EXCHANGE_TIMEOUT: Final = 5.0  # seconds; an exchange takes milliseconds, a hang means a broken path


class _Report:
    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._started = time.perf_counter()
        self._step = 0

    def heading(self, title: str) -> None:
        self._step += 1
        elapsed = time.perf_counter() - self._started
        line = f"== {self._step}. {title} "
        self.line(f"\n{line:=<78} [{elapsed:4.1f}s]")

    def line(self, text: str = "") -> None:
        print(text, file=self._out, flush=True)


async def run_demo(
    out: TextIO, *, prefix: str = DEFAULT_PREFIX, mode: Mode = Mode.REDIRECT, ipv6: bool = True, mtls: bool = True
) -> bool:
    """Returns True when every exchange went through the proxies and back."""
    report = _Report(out)
    lab = Lab(prefix, DEMO_PODS, mode, ipv6, mtls=mtls)
    security = "strict mTLS between pods" if mtls else "plaintext (--no-mtls)"
    report.heading(f"lab up: {DEMO_PODS} pods, mode {mode.value}, IPv6 {'on' if ipv6 else 'off'}, {security}")
    await lab.up()  # on failure it has already removed what it built (and kept the logs it names)
    try:
        for pod in lab.pods:
            v6 = f", {pod.ipv6}" if pod.ipv6 else ""
            report.line(f"pod {pod.name}: namespace {pod.netns}, {pod.address}{v6}; proxy ready, app on :{APP_PORT}")
            if mtls:
                await _show_from_admin(report, pod, _identity_line, heading=False)
        if mtls:
            report.line(f"(each proxy: --identity {lab.pod('a').identity_dir}, --policy {lab.pod('a').policy_path}")
            report.line(" for pod a: inbound mtls strict, outbound meshed: every other pod by its exact identity)")
        report.heading("traffic between pods, through both pods' proxies")
        if mode is Mode.TPROXY:
            report.line("(tproxy: the server sees the calling pod's own address as its peer)")
        else:
            report.line("(redirect: the server sees its local proxy as its peer)")
        exchanges = [(lab.pod(src), lab.pod(dst), lab.pod(dst).address) for src, dst in ROUTES]
        v6_target = lab.pod("b").ipv6
        if v6_target is not None:
            exchanges.append((lab.pod("a"), lab.pod("b"), v6_target))
        results = [await _exchange(report, src, dst, host) for src, dst, host in exchanges]
        report.heading("HTTP/1.1 between pods: detected, proxied per request by both proxies")
        report.line("(the app shows the fields the proxies set: x-request-id, x-forwarded-for, x-forwarded-proto)")
        results += [await _http_exchange(report, lab.pod(src), lab.pod(dst)) for src, dst in ROUTES]
        report.heading("connection tables (meshctl conns --pod NAME): PROTO opaque for :8080, http1 for :8081")
        for pod in lab.pods:
            await _show_from_admin(report, pod, _connection_table)
        report.heading("metrics excerpt (GET /metrics, TCP and HTTP families)")
        for pod in lab.pods:
            await _show_from_admin(report, pod, _metrics_excerpt)
        if mtls:
            results.append(await _rotation(report, lab))
        return all(results)
    finally:
        with trio.CancelScope(shield=True):
            try:
                report.heading("lab down")
            finally:  # also when the reader went away (`meshctl lab demo | head`): the lab must not stay up
                done = await lab.down()
            report.line(done.summary())


async def _exchange(report: _Report, src: Pod, dst: Pod, host: str) -> bool:
    shown = f"[{host}]" if ":" in host else host
    report.line(f"\n{src.name} -> {dst.name}  connect {shown}:{APP_PORT} from inside {src.netns}")
    line = f"ping from {src.name}"
    try:
        with trio.fail_after(EXCHANGE_TIMEOUT):
            greeting, echo = await talk(src.netns, host, APP_PORT, [line])
    except (OSError, EOFError, trio.TooSlowError) as exc:
        report.line(f"  FAILED: {type(exc).__name__}: {exc}")
        return False
    report.line(f"  < {greeting}")
    report.line(f"  > {line}")
    report.line(f"  < {echo}")
    return True


async def _http_exchange(report: _Report, src: Pod, dst: Pod) -> bool:
    report.line(f"\n{src.name} -> {dst.name}  GET http://{dst.address}:{HTTP_PORT}{{{','.join(HTTP_PATHS)}}}")
    try:
        with trio.fail_after(EXCHANGE_TIMEOUT):
            replies = await http_get(src.netns, dst.address, HTTP_PORT, HTTP_PATHS)
    except (OSError, EOFError, ValueError, trio.TooSlowError) as exc:
        report.line(f"  FAILED: {type(exc).__name__}: {exc}")
        return False
    for status, body in replies:
        report.line(f"  < {status}")
        report.line(f"  < {body}")
    return all(" 200 " in status for status, _ in replies)


async def _rotation(report: _Report, lab: Lab) -> bool:
    """Rotates every pod's SVID (``meshctl lab rotate``) and sends HTTP a->b again: new handshakes, new serials."""
    report.heading("rotate every pod's SVID (meshctl lab rotate), then HTTP/1.1 again")
    try:
        rotations = await rotate(lab.prefix)
    except CtlError as exc:
        report.line(f"FAILED: {exc}")
        return False
    for rotation in rotations:
        report.line(rotation.summary())
    return await _http_exchange(report, lab.pod("a"), lab.pod("b"))


async def _show_from_admin(
    report: _Report, pod: Pod, render: Callable[[AdminClient], list[str]], *, heading: bool = True
) -> None:
    """Prints ``render(admin client)`` indented under the pod's name, or the admin error instead."""
    if heading:
        report.line(f"\npod {pod.name} ({pod.netns}):")
    try:
        lines = await trio.to_thread.run_sync(render, pod.admin())
    except CtlError as exc:
        lines = [str(exc)]
    for line in lines:
        report.line(f"  {line}".rstrip())


def _identity_line(client: AdminClient) -> list[str]:
    identity = client.status().identity
    if identity is None or identity.spiffe_id is None:
        return ["identity: none"]
    return [f"identity: {identity.spiffe_id}, serial {identity.serial}"]


def _connection_table(client: AdminClient) -> list[str]:
    return render_connections(client.connections(), now=time.time()).splitlines()


def _metrics_excerpt(client: AdminClient) -> list[str]:
    text = client.metrics()
    needles = [f":{APP_PORT}", f'"{APP_PORT}"']  # target_addr="...:8080" or target_port="8080"
    # Each connection is counted on both sides (peer="src": the client, peer="dst": the upstream); the client
    # side alone tells the story and halves the excerpt.
    lines = excerpt(text, METRIC_FAMILIES, needles, excluding=['peer="dst"'])
    lines = lines or [f"(no {', '.join(METRIC_FAMILIES)} samples)"]
    http = excerpt(text, HTTP_METRIC_FAMILIES, [f":{HTTP_PORT}"])
    return lines + (http or [f"(no {', '.join(HTTP_METRIC_FAMILIES)} samples)"])
