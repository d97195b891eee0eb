"""Real client and peer programs the tests drive. ``make test`` installs every one (scripts/setup-bench.sh), so a
missing one fails the test that needs it, naming the package, instead of skipping it."""

from __future__ import annotations

import shutil

import pytest

PACKAGES = {
    "curl": "curl",
    "nghttp": "nghttp2-client",
    "h2load": "nghttp2-client",
    "sslscan": "sslscan",
    "tshark": "tshark",
}


def need(tool: str) -> str:
    """The path of ``tool``; fails the calling test when it is not installed."""
    found = shutil.which(tool)
    if found is None:
        package = PACKAGES.get(tool, tool)
        pytest.fail(f"{tool} is not installed (Debian package {package}; `make test` installs it)")
    return found
