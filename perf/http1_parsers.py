"""Which HTTP/1.1 parser the proxy uses, decided by measurement: ``python -m perf.http1_parsers``.

Candidates: httptools (llhttp, C, strict by default), h11 (pure Python) and triomesh's own strict parser
(``dataplane.http1``). For each: CPU microseconds to parse and validate a typical request head and response
head, to re-serialise a request for forwarding, and to decode chunked bodies; then what each one refuses of the
AWS http-desync-guardian corpus on its own. Prints a Markdown report (docs/http1.md carries one run).
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from importlib.metadata import version

import h11
import httptools

from dataplane.http.forwarding import set_forwarded, strip_hop_by_hop
from dataplane.http.model import RequestHead
from dataplane.http.wire import serialise_request_head
from dataplane.http1.errors import Http1Error
from dataplane.http1.events import DataReceived, MessageEnded, RequestReceived, ResponseReceived
from dataplane.http1.parser import RequestParser, ResponseParser
from perf.machine import _cpuinfo_model

# What curl and wrk send (six fields), and what a small JSON service answers.
REQUEST = (
    b"GET /api/v1/items?page=2 HTTP/1.1\r\n"
    b"Host: backend.default.svc.cluster.local:8080\r\n"
    b"User-Agent: curl/7.88.1\r\n"
    b"Accept: */*\r\n"
    b"Accept-Encoding: gzip, deflate\r\n"
    b"Connection: keep-alive\r\n"
    b"X-Request-Id: 5d1c6c0e-8f7e-4b4a-9c1f-1f2e3d4c5b6a\r\n"
    b"\r\n"
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: 13\r\n"
    b"Date: Tue, 02 Dec 2025 10:00:00 GMT\r\n"
    b"Server: nginx/1.22.1\r\n"
    b"Cache-Control: no-cache\r\n"
    b"Connection: keep-alive\r\n"
    b"\r\n"
    b'{"ok": true}\n'
)
CHUNK_SIZES = (1024, 64 * 1024, 1024 * 1024)
CHUNK = 16 * 1024
"""Bodies are sent as 16 KiB chunks and fed to the parser in 64 KiB reads, as the proxy would read them."""
READ = 64 * 1024


def cpu_us(fn: Callable[[], object], *, budget_s: float = 0.3, repeat: int = 5) -> float:
    """Median CPU microseconds per call (process time, so a busy neighbour does not inflate it)."""
    n = 1
    while True:
        start = time.process_time()
        for _ in range(n):
            fn()
        took = time.process_time() - start
        if took > budget_s / repeat or n > 1_000_000:
            break
        n *= 4
    runs = []
    for _ in range(repeat):
        start = time.process_time()
        for _ in range(n):
            fn()
        runs.append((time.process_time() - start) / n * 1e6)
    return sorted(runs)[len(runs) // 2]


# --- request head -----------------------------------------------------------------------------------------


def ours_request() -> object:
    p = RequestParser()
    p.receive_data(REQUEST)
    event = p.next_event()
    assert isinstance(event, RequestReceived)
    assert isinstance(p.next_event(), MessageEnded)
    return event


def h11_request() -> object:
    c = h11.Connection(h11.SERVER)
    c.receive_data(REQUEST)
    event = c.next_event()
    assert isinstance(event, h11.Request)
    assert isinstance(c.next_event(), h11.EndOfMessage)
    return event


class _Collect:
    """httptools callbacks: the least a proxy needs (url, fields, body, end)."""

    __slots__ = ("body", "done", "fields", "url")

    def __init__(self) -> None:
        self.url = b""
        self.fields: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.done = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True


def httptools_request() -> object:
    sink = _Collect()
    p = httptools.HttpRequestParser(sink)
    p.feed_data(REQUEST)
    assert sink.done
    return (p.get_method(), sink.url, p.get_http_version(), sink.fields)


# --- response head ----------------------------------------------------------------------------------------


def ours_response() -> object:
    p = ResponseParser()
    p.expect(b"GET")
    p.receive_data(RESPONSE)
    event = p.next_event()
    assert isinstance(event, ResponseReceived)
    assert isinstance(p.next_event(), DataReceived)
    assert isinstance(p.next_event(), MessageEnded)
    return event


def h11_response() -> object:
    c = h11.Connection(h11.CLIENT)
    c.send(h11.Request(method="GET", target="/", headers=[("Host", "a")]))
    c.send(h11.EndOfMessage())
    c.receive_data(RESPONSE)
    event = c.next_event()
    assert isinstance(event, h11.Response)
    assert isinstance(c.next_event(), h11.Data)
    assert isinstance(c.next_event(), h11.EndOfMessage)
    return event


def httptools_response() -> object:
    sink = _Collect()
    p = httptools.HttpResponseParser(sink)
    p.feed_data(RESPONSE)
    assert sink.done
    return (p.get_status_code(), sink.fields)


# --- re-serialise for forwarding -----------------------------------------------------------------------------

_OUR_EVENT = ours_request()
assert isinstance(_OUR_EVENT, RequestReceived)
_H11_EVENT = h11_request()
assert isinstance(_H11_EVENT, h11.Request)


def ours_forward() -> bytes:
    event = _OUR_EVENT
    assert isinstance(event, RequestReceived)
    headers = strip_hop_by_hop(event.head.headers)
    set_forwarded(headers, client=b"10.0.0.7", proto=b"http")
    head = RequestHead(event.head.method, event.head.target, b"1.1", headers)
    return serialise_request_head(head, event.framing)


def h11_forward() -> bytes:
    event = _H11_EVENT
    assert isinstance(event, h11.Request)
    keep = [(n, v) for n, v in event.headers if n not in (b"connection", b"x-forwarded-for", b"x-forwarded-proto")]
    keep += [(b"x-forwarded-for", b"10.0.0.7"), (b"x-forwarded-proto", b"http")]
    c = h11.Connection(h11.CLIENT)
    out = c.send(h11.Request(method=event.method, target=event.target, headers=keep))
    assert out is not None
    return out + (c.send(h11.EndOfMessage()) or b"")


# --- chunked bodies -------------------------------------------------------------------------------------------


def chunked_request(size: int) -> list[bytes]:
    head = b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = bytearray()
    left = size
    while left:
        n = min(CHUNK, left)
        body += b"%x\r\n" % n + b"x" * n + b"\r\n"
        left -= n
    wire = head + bytes(body) + b"0\r\n\r\n"
    return [wire[i : i + READ] for i in range(0, len(wire), READ)]


def ours_chunked(reads: list[bytes], size: int) -> None:
    p = RequestParser()
    got = 0
    for data in reads:
        p.receive_data(data)
        while True:
            event = p.next_event()
            if isinstance(event, DataReceived):
                got += len(event.data)
            elif not isinstance(event, RequestReceived):
                break
    assert got == size


def h11_chunked(reads: list[bytes], size: int) -> None:
    c = h11.Connection(h11.SERVER)
    got = 0
    for data in reads:
        c.receive_data(data)
        while True:
            event = c.next_event()
            if isinstance(event, h11.Data):
                got += len(event.data)
            elif not isinstance(event, h11.Request):
                break
    assert got == size


def httptools_chunked(reads: list[bytes], size: int) -> None:
    sink = _Collect()
    p = httptools.HttpRequestParser(sink)
    for data in reads:
        p.feed_data(data)
    assert sink.done and sum(map(len, sink.body)) == size


# --- strictness on the corpus ---------------------------------------------------------------------------------


def corpus_verdicts() -> tuple[dict[str, Counter[str]], Counter[str]]:
    """Per parser: how many cases of each tier it refuses on its own (UTF-8 spelling of each case); and the
    number of cases per tier."""
    from tests.dataplane.http1.corpus import load_cases

    def ours(raw: bytes) -> bool:
        p = RequestParser()
        p.receive_data(raw)
        try:
            p.next_event()
        except Http1Error:
            return True
        return False

    def with_h11(raw: bytes) -> bool:
        c = h11.Connection(h11.SERVER)
        c.receive_data(raw)
        try:
            event = c.next_event()
        except h11.RemoteProtocolError:
            return True
        return event is h11.NEED_DATA

    def with_httptools(raw: bytes) -> bool:
        p = httptools.HttpRequestParser(_Collect())
        try:
            p.feed_data(raw)
        except httptools.HttpParserError:
            return True
        return False

    parsers = {"triomesh": ours, "h11": with_h11, "httptools": with_httptools}
    out: dict[str, Counter[str]] = {name: Counter() for name in parsers}
    tiers: Counter[str] = Counter()
    for case in load_cases():
        if case.encoding != "utf-8":
            continue
        tiers[case.tier] += 1
        for name, refuses in parsers.items():
            if refuses(case.raw):
                out[name][case.tier] += 1
    return out, tiers


def report() -> str:
    rows: list[tuple[str, float, float, float]] = [
        ("request head: parse + validate", cpu_us(ours_request), cpu_us(h11_request), cpu_us(httptools_request)),
        ("response head + 13-byte body", cpu_us(ours_response), cpu_us(h11_response), cpu_us(httptools_response)),
        ("request: rewrite + serialise", cpu_us(ours_forward), cpu_us(h11_forward), cpu_us(ours_forward)),
    ]
    for size in CHUNK_SIZES:
        reads = chunked_request(size)
        rows.append(
            (
                f"chunked body {size // 1024} KiB",
                cpu_us(functools.partial(ours_chunked, reads, size)),
                cpu_us(functools.partial(h11_chunked, reads, size)),
                cpu_us(functools.partial(httptools_chunked, reads, size)),
            )
        )
    verdicts, tiers = corpus_verdicts()
    lines = [
        f"Machine: {_cpuinfo_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"h11 {version('h11')}, httptools {version('httptools')} (llhttp, leniencies off).",
        "",
        "| CPU µs per operation (median of 5) | triomesh | h11 | httptools |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {name} | {a:.1f} | {b:.1f} | {c:.1f} |" for name, a, b, c in rows]
    lines += [
        "",
        "httptools has no serialiser: its row reuses triomesh's. Its parse rows collect the fields in Python "
        "callbacks and do none of the checks below that llhttp lacks.",
        "",
        "| corpus cases refused on its own | " + " | ".join(verdicts) + " |",
        "|---|" + "---:|" * len(verdicts),
    ]
    for tier in ("Severe", "Ambiguous", "Acceptable", "Compliant"):
        cells = " | ".join(f"{v[tier]}/{tiers[tier]}" for v in verdicts.values())
        lines.append(f"| {tier} | {cells} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m perf.http1_parsers", description=__doc__).parse_args(argv)
    print(report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
