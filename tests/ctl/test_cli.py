from __future__ import annotations

import socket
import subprocess
import sys

import msgspec
import pytest
import trio

from ctl.__main__ import main
from ctl.commands.watch import refresh_loop
from ctl.errors import CtlError
from dataplane.admin.schema import ConnectionsReport, StatusReport
from tests.ctl.admin_standin import (
    Answer,
    StandIn,
    healthy_answers,
    json_answer,
    sample_connections,
    sample_status,
)


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (
            ["conns", "--admin", "ftp://127.0.0.1:1"],
            "argument --admin: invalid admin URL 'ftp://127.0.0.1:1'",
        ),
        (["--admin", "http://[::1", "status"], "argument --admin"),
        (["conns", "--watch", "0"], "argument --watch: 0 is out of range"),
        (["conns", "--watch", "soon"], "argument --watch: 'soon' is not a number of seconds"),
        (["conns", "--open", "--closed"], "argument --closed: not allowed with argument --open"),
        (["conns", "--bogus"], "unrecognized arguments: --bogus"),
        (["lab", "up", "--pods", "0"], "argument --pods: 0 is out of range (1 to 26)"),
        (["lab", "up", "--pods", "two"], "argument --pods: 'two' is not a whole number"),
        (["lab", "up", "--mode", "nat"], "argument --mode: invalid choice: 'nat'"),
        (["lab", "down", "--prefix", "Bad-Prefix"], "argument --prefix: invalid lab prefix 'Bad-Prefix'"),
        (["lab", "up", "--service", "--weights", "1,x"], "argument --weights: invalid weights '1,x'"),
        (["lab", "fail", "b", "boom"], "argument MODE: invalid fail mode 'boom': off, reset, hang or an error status"),
        (["lab", "fail", "b", "200"], "argument MODE: invalid fail mode '200'"),
        (["lab", "delay", "b", "-5"], "argument MS: -5 is out of range (0 to 600000)"),
        (["lab", "kill-app"], "the following arguments are required: POD"),
        (["policy"], "the following arguments are required: ACTION"),
        (["policy", "validate"], "the following arguments are required: FILE"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_bad_arguments_exit_2_naming_the_flag(argv: list[str], named: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert named in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["conns", "--pod", "a", "--netns", "x"], "--pod and --netns both name a namespace"),
        (["--pod", "ab", "status"], "--pod/--lab-prefix: invalid pod name 'ab'"),
        (["--pod", "a", "--lab-prefix", "X", "status"], "--pod/--lab-prefix: invalid lab prefix 'X'"),
        (["lab", "exec", "a"], "give the command after the pod"),
        (["lab", "exec", "--prefix", "tmlab", "zz", "--", "true"], "lab exec POD: invalid pod name 'zz'"),
        (["lab", "up", "--weights", "1,2"], "lab up: --weights needs --service"),
        (["lab", "up", "--service", "--weights", "1,2"], "--weights gives 2 weight(s) for 3 endpoint pods (b, c, d)"),
        (["lab", "up", "--service", "--pods", "1"], "a service lab needs at least 2 pods (--pods)"),
        (["lab", "fail", "zz", "503"], "lab fail POD: invalid pod name 'zz'"),
        (["lab", "start-app", "zz"], "lab start-app POD: invalid pod name 'zz'"),
    ],
)
def test_bad_argument_combinations_exit_2(argv: list[str], named: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("command", ["conns", "status"])
def test_unreachable_proxy_is_one_line_and_exit_1(command: str) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    done = subprocess.run(
        [sys.executable, "-m", "ctl", "--admin", url, command], capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        f"meshctl: error: cannot reach the proxy admin endpoint at {url}: connection refused (is mesh-proxy running?)\n"
    )


def test_missing_namespace_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--netns", "tmct-no-such-namespace", "status"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "meshctl: error: network namespace 'tmct-no-such-namespace' does not exist"
        " (no /run/netns/tmct-no-such-namespace)\n"
    )


async def _serve(nursery: trio.Nursery) -> str:
    port = await nursery.start(StandIn(healthy_answers()).serve)
    return f"http://127.0.0.1:{port}"


async def test_conns_prints_the_table(nursery: trio.Nursery, capsys: pytest.CaptureFixture[str]) -> None:
    url = await _serve(nursery)
    assert await trio.to_thread.run_sync(main, ["conns", "--admin", url]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 open, 1 recently closed")
    assert "[fd00:7472:696f::11]:51234" in out and "upstream_refused (ECONNREFUSED)" in out


async def test_conns_json_is_the_connections_report(nursery: trio.Nursery, capsys: pytest.CaptureFixture[str]) -> None:
    url = await _serve(nursery)
    assert await trio.to_thread.run_sync(main, ["--admin", url, "conns", "--json"]) == 0
    assert msgspec.json.decode(capsys.readouterr().out, type=ConnectionsReport) == sample_connections()
    assert await trio.to_thread.run_sync(main, ["--admin", url, "conns", "--json", "--closed"]) == 0
    closed_only = msgspec.json.decode(capsys.readouterr().out, type=ConnectionsReport)
    assert closed_only.open == [] and closed_only.recent == sample_connections().recent


async def test_conns_open_only(nursery: trio.Nursery, capsys: pytest.CaptureFixture[str]) -> None:
    url = await _serve(nursery)
    assert await trio.to_thread.run_sync(main, ["conns", "--open", "--admin", url]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 open, 0 recently closed") and "ECONNREFUSED" not in out


async def test_status_text_and_json(nursery: trio.Nursery, capsys: pytest.CaptureFixture[str]) -> None:
    url = await _serve(nursery)
    assert await trio.to_thread.run_sync(main, ["status", "--admin", url]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ready:        yes\n") and "policy:       demo version 1" in out
    assert await trio.to_thread.run_sync(main, ["status", "--json", "--admin", url]) == 0
    assert msgspec.json.decode(capsys.readouterr().out, type=StatusReport) == sample_status()


async def test_watch_refreshes_and_survives_errors(
    autojump_clock: trio.abc.Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[float] = []

    def show() -> str:  # runs in a worker thread, as a real fetch does
        calls.append(trio.from_thread.run_sync(trio.current_time))
        if len(calls) == 2:
            raise CtlError("proxy restarting")
        return f"report {len(calls)}\n"

    start = trio.current_time()
    assert await refresh_loop(show, 2.0, "title", False, 3) == 0
    assert capsys.readouterr().out == "report 1\nerror: proxy restarting\nreport 3\n"
    assert [round(t - start) for t in calls] == [0, 2, 4]


async def test_status_not_ready_shows_why(nursery: trio.Nursery, capsys: pytest.CaptureFixture[str]) -> None:
    answers = healthy_answers()
    answers["/status"] = json_answer(sample_status(ready=False))
    answers["/ready"] = Answer(503, b"not ready: policy not loaded\n", "text/plain")
    port = await nursery.start(StandIn(answers).serve)
    assert await trio.to_thread.run_sync(main, ["status", "--admin", f"127.0.0.1:{port}"]) == 0
    assert capsys.readouterr().out.startswith("ready:        no (not ready: policy not loaded)\n")
