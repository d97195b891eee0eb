"""Reading what the load generators print: wrk, h2load, iperf3 (-J), and nginx's stub_status page. Pure: text in,
figures out.

Each parser raises ``ToolOutputError`` naming the tool and what it could not find, never returns a guess.
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

_WRK_TIME_UNITS: Final = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_WRK_PERCENTILE: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_WRK_RPS: Final = re.compile(r"^Requests/sec:\s+([\d.]+)\s*$", re.MULTILINE)
_WRK_TOTAL: Final = re.compile(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),", re.MULTILINE)
_WRK_NON_2XX: Final = re.compile(r"^\s*Non-2xx or 3xx responses:\s+(\d+)\s*$", re.MULTILINE)
_WRK_SOCKET_ERRORS: Final = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", re.MULTILINE
)
_NGINX_REQUESTS: Final = re.compile(r"^server accepts handled requests\s*\n\s*\d+\s+\d+\s+(\d+)\s*$", re.MULTILINE)
_H2LOAD_FINISHED: Final = re.compile(r"^finished in ([\d.]+)(us|ms|s|m|h), ([\d.]+) req/s", re.MULTILINE)
_H2LOAD_REQUESTS: Final = re.compile(
    r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored,"
    r" (\d+) timeout",
    re.MULTILINE,
)
_H2LOAD_STATUS: Final = re.compile(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", re.MULTILINE)


class ToolOutputError(ValueError):
    """A load generator's output lacks a figure the harness needs."""


class WrkResult(msgspec.Struct, frozen=True, kw_only=True):
    rps: float
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    """Non-2xx/3xx responses plus socket errors (connect, read, write, timeout)."""
    p999_ms: float | None = None
    """From perf/fixed_rate.lua, which prints the 99.9th percentile after wrk's table; None without it."""


def parse_stub_status(text: str) -> int:
    """The request count of nginx's ``stub_status`` page (the third number under ``server accepts handled
    requests``): every request this nginx has answered, the status request itself included."""
    found = _NGINX_REQUESTS.search(text)
    if found is None:
        raise ToolOutputError(f"nginx stub_status: no 'accepts handled requests' counts: {_excerpt(text)}")
    return int(found[1])


class H2loadResult(msgspec.Struct, frozen=True, kw_only=True):
    rps: float
    succeeded: int
    failed: int
    """failed + errored + timed out requests."""
    non_2xx: int
    """Responses with a 3xx, 4xx or 5xx status (a proxy that cannot reach the upstream answers 502)."""


class IperfResult(msgspec.Struct, frozen=True, kw_only=True):
    bytes: int
    """Bytes the server received."""
    seconds: float


def parse_wrk(text: str) -> WrkResult:
    """``wrk --latency`` output (the latency distribution gives p50 and p99)."""
    percentiles = {float(m[1]): _ms(float(m[2]), m[3]) for m in _WRK_PERCENTILE.finditer(text)}
    rps = _WRK_RPS.search(text)
    total = _WRK_TOTAL.search(text)
    if rps is None or total is None:
        raise ToolOutputError(f"wrk: no 'Requests/sec' or 'N requests in' line in its output: {_excerpt(text)}")
    if 50.0 not in percentiles or 99.0 not in percentiles:
        raise ToolOutputError("wrk: no 50% and 99% lines in the latency distribution (was --latency given?)")
    errors = 0
    if (non_2xx := _WRK_NON_2XX.search(text)) is not None:
        errors += int(non_2xx[1])
    if (socket_errors := _WRK_SOCKET_ERRORS.search(text)) is not None:
        errors += sum(int(n) for n in socket_errors.groups())
    return WrkResult(
        rps=float(rps[1]),
        requests=int(total[1]),
        seconds=_ms(float(total[2]), total[3]) / 1e3,
        p50_ms=percentiles[50.0],
        p99_ms=percentiles[99.0],
        errors=errors,
        p999_ms=percentiles.get(99.9),
    )


def parse_h2load(text: str) -> H2loadResult:
    finished = _H2LOAD_FINISHED.search(text)
    requests = _H2LOAD_REQUESTS.search(text)
    status = _H2LOAD_STATUS.search(text)
    if finished is None or requests is None or status is None:
        raise ToolOutputError(
            f"h2load: no 'finished in', 'requests:' or 'status codes:' line in its output: {_excerpt(text)}"
        )
    _total, _started, _done, succeeded, failed, errored, timeout = (int(n) for n in requests.groups())
    return H2loadResult(
        rps=float(finished[3]),
        succeeded=succeeded,
        failed=failed + errored + timeout,
        non_2xx=sum(int(n) for n in status.groups()[1:]),
    )


class _IperfSum(msgspec.Struct):
    bytes: int
    seconds: float


class _IperfEnd(msgspec.Struct):
    sum_received: _IperfSum | None = None  # absent when the test failed


class _IperfReport(msgspec.Struct):
    end: _IperfEnd
    error: str | None = None


def parse_iperf3(text: str) -> IperfResult:
    """``iperf3 -J`` output: what the server received over the test."""
    try:
        report = msgspec.json.decode(text, type=_IperfReport)
    except msgspec.DecodeError as exc:
        raise ToolOutputError(f"iperf3: not the JSON of a finished test ({exc}): {_excerpt(text)}") from None
    if report.error is not None:
        raise ToolOutputError(f"iperf3: {report.error}")
    received = report.end.sum_received
    if received is None:
        raise ToolOutputError("iperf3: no end.sum_received in its report")
    if received.seconds <= 0:
        raise ToolOutputError("iperf3: the test lasted 0 seconds")
    return IperfResult(bytes=received.bytes, seconds=received.seconds)


def _ms(value: float, unit: str) -> float:
    return value * _WRK_TIME_UNITS[unit]


def _excerpt(text: str) -> str:
    flat = " / ".join(line.strip() for line in text.strip().splitlines()[-4:])
    return repr(flat[:300]) if flat else "(empty)"
