"""The perf tests run the real peers: ``make test`` installs them (scripts/setup-bench.sh). Missing ones fail the
tests that need them, with the command that installs them, instead of skipping."""

from __future__ import annotations

import shutil

import pytest

from perf.proxies import envoy_binary


def need(tool: str) -> str:
    found = envoy_binary() if tool == "envoy" else shutil.which(tool)
    if found is None:
        pytest.fail(f"{tool} is not installed: run `make bench-setup` (scripts/setup-bench.sh)")
    return found
