"""The perf tests run the real peers: ``make test`` installs them (scripts/setup-bench.sh). Missing ones fail the
tests that need them, with the command that installs them, instead of skipping."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from perf.proxies import envoy_binary
from tests import tools


def need(tool: str) -> str:
    if tool != "envoy":
        return tools.need(tool)
    found = envoy_binary()
    if found is None:
        pytest.fail("envoy is not installed: run `make bench-setup` (scripts/setup-bench.sh)")
    return found


def envoy_validates(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` and assert that ``envoy --mode validate`` accepts it."""
    path.write_text(text)
    done = subprocess.run(
        [need("envoy"), "--mode", "validate", "-c", str(path), "-l", "warning"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stdout + done.stderr
