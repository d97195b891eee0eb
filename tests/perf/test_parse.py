"""Reading wrk, h2load and iperf3 output: real outputs of the Debian 12 versions the harness installs."""

from __future__ import annotations

import pytest

from perf.parse import ToolOutputError, parse_h2load, parse_iperf3, parse_stub_status, parse_wrk

WRK = """\
Running 5s test @ http://127.0.0.1:28380/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   692.48us  187.65us   1.87ms   73.53%
    Req/Sec    60.48k   641.49    61.46k    60.00%
  Latency Distribution
     50%  705.00us
     75%  801.00us
     90%    0.91ms
     99%    1.15ms
  300750 requests in 5.00s, 45.89MB read
Requests/sec:  60150.02
Transfer/sec:      9.18MB
"""

WRK_WITH_ERRORS = """\
Running 1s test @ http://127.0.0.1:9/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.10s   120.00ms   2.50s    90.00%
    Req/Sec    10.00      3.00    20.00     80.00%
  Latency Distribution
     50%    2.10s
     75%    2.20s
     90%    2.30s
     99%    2.50s
  20 requests in 1.00m, 3.00KB read
  Socket errors: connect 3, read 2, write 1, timeout 4
  Non-2xx or 3xx responses: 5
Requests/sec:      0.33
Transfer/sec:      51.20B
"""

H2LOAD = """\
starting benchmark...
spawning thread #0: 10 total client(s). Timing-based test with 0s of warm-up time and 2s of main duration
Main benchmark duration is over for thread #0. Stopping all clients.
Stopped all clients for thread #0

finished in 2.00s, 43216.00 req/s, 3.26MB/s
requests: 86432 total, 86532 started, 86432 done, 86430 succeeded, 2 failed, 0 errored, 0 timeout
status codes: 86420 2xx, 0 3xx, 4 4xx, 6 5xx
traffic: 6.51MB (6828618) total, 4.04MB (4235168) headers (space savings 50.51%), 1012.88KB (1037184) data
                     min         max         mean         sd        +/- sd
time for request:      169us      4.48ms      2.08ms       628us    84.39%
"""

IPERF3 = """\
{
	"start": {"version": "iperf 3.12"},
	"intervals": [],
	"end": {
		"sum_sent": {"start": 0, "end": 1.000144, "seconds": 1.000144, "bytes": 3570401280, "sender": true},
		"sum_received": {"start": 0, "end": 1.011594, "seconds": 1.011594, "bytes": 1828454400,
			"bits_per_second": 14459986120.91412, "sender": true},
		"cpu_utilization_percent": {"host_total": 50.1}
	}
}
"""

IPERF3_REFUSED = """\
{
	"start":	{"connected": [], "version": "iperf 3.12"},
	"intervals":	[],
	"end":	{
	},
	"error":	"unable to connect to server: Connection refused"
}
"""


def test_wrk() -> None:
    result = parse_wrk(WRK)
    assert result.rps == 60150.02
    assert result.requests == 300750
    assert result.seconds == 5.0
    assert result.p50_ms == pytest.approx(0.705)
    assert result.p99_ms == pytest.approx(1.15)
    assert result.errors == 0


def test_wrk_units_and_errors() -> None:
    result = parse_wrk(WRK_WITH_ERRORS)
    assert result.p50_ms == pytest.approx(2100.0)
    assert result.seconds == 60.0
    assert result.errors == 3 + 2 + 1 + 4 + 5


def test_wrk_without_latency_distribution_names_the_flag() -> None:
    text = "\n".join(line for line in WRK.splitlines() if "%  " not in line or "Req/Sec" in line)
    with pytest.raises(ToolOutputError, match="--latency"):
        parse_wrk(text)


def test_wrk_connection_refused_is_an_error() -> None:
    with pytest.raises(ToolOutputError, match="wrk"):
        parse_wrk("unable to connect to 127.0.0.1:28398 Connection refused\n")


def test_h2load() -> None:
    result = parse_h2load(H2LOAD)
    assert result.rps == 43216.0
    assert (result.succeeded, result.failed, result.non_2xx) == (86430, 2, 10)


def test_h2load_truncated() -> None:
    with pytest.raises(ToolOutputError, match="h2load"):
        parse_h2load(H2LOAD.split("requests:", maxsplit=1)[0])


def test_iperf3() -> None:
    result = parse_iperf3(IPERF3)
    assert (result.bytes, result.seconds) == (1828454400, 1.011594)


def test_iperf3_error_is_reported() -> None:
    with pytest.raises(ToolOutputError, match="Connection refused"):
        parse_iperf3(IPERF3_REFUSED)


def test_iperf3_not_json() -> None:
    with pytest.raises(ToolOutputError, match="iperf3"):
        parse_iperf3("iperf3: error - unable to connect to server\n")


def test_wrk_with_the_fixed_rate_scripts_tail() -> None:
    # perf/fixed_rate.lua prints the 99.9th percentile after wrk's own table, in the table's format.
    text = WRK.replace("Transfer/sec:      9.18MB\n", "Transfer/sec:      9.18MB\n  99.9%  2345.00us\n")
    assert parse_wrk(text).p999_ms == pytest.approx(2.345)
    assert parse_wrk(WRK).p999_ms is None


# nginx ends its status lines with a space.
NGINX_STATUS = (
    "Active connections: 3 \nserver accepts handled requests\n 17 17 40211 \nReading: 0 Writing: 1 Waiting: 2 \n"
)


def test_nginx_stub_status() -> None:
    assert parse_stub_status(NGINX_STATUS) == 40211


def test_nginx_stub_status_without_counts() -> None:
    with pytest.raises(ToolOutputError, match="stub_status"):
        parse_stub_status("<html>404 Not Found</html>")
