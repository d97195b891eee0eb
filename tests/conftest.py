"""Shared test fixtures.

Root-only tests (network namespaces, iptables) are marked ``netns`` and take the ``require_netns`` fixture.
They skip only on a developer machine without root; with REQUIRE_NETNS=1 (``make test``) or CI=true they fail
instead, because a skipped root test "just appears to pass" (ztunnel's tests/README).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def _netns_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip)"
    probe = f"tmprobe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def _must_run_root_tests() -> bool:
    return os.environ.get("REQUIRE_NETNS") == "1" or os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def require_netns() -> None:
    reason = _netns_unavailable_reason()
    if reason is None:
        return
    if _must_run_root_tests():
        pytest.fail(f"root/netns test cannot run here ({reason}) and REQUIRE_NETNS/CI forbids skipping")
    pytest.skip(reason)
