"""``python -m perf``: bad flags exit 2 naming the flag, failures exit 1 with one line and no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from perf.cli import main


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["run", "--rounds", "0"], "--rounds"),
        (["run", "--duration", "1.5"], "--duration"),
        (["run", "--only", "http1,nope"], "--only"),
        (["run", "--only", ","], "--only"),
        (["run", "--proxies", "squid"], "--proxies"),
        (["run", "--idle-connections", "-5"], "--idle-connections"),
        (["run", "--rate", "fast"], "--rate"),
        (["lab", "--mode", "nat"], "--mode"),
        (["lab", "--prefix", "tmlab"], "--prefix"),
        (["lab", "--prefix", "tmpf-bad"], "--prefix"),
        ([], "run,lab,scaling,report"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert flag in capsys.readouterr().err


def test_report_of_a_missing_file_exits_1_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "nothing.json")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("perf: ") and "nothing.json" in err
    assert "Traceback" not in err


def test_report_of_a_damaged_file_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    damaged = tmp_path / "run.json"
    damaged.write_text('{"machine": {}}')
    assert main(["report", str(damaged)]) == 1
    assert capsys.readouterr().err.startswith("perf: ")
