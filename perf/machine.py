"""The machine description every result carries: CPU, cores, memory, kernel, and each peer's own version."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path
from typing import Final

import trio

from perf.proxies import REPO, envoy_binary
from perf.results import Machine

_VERSION_COMMANDS: Final = {
    "nginx": ["nginx", "-v"],
    "haproxy": ["haproxy", "-v"],
    "wrk": ["wrk", "-v"],
    "h2load": ["h2load", "--version"],
    "iperf3": ["iperf3", "--version"],
}


async def describe() -> Machine:
    cpu = _cpuinfo_model()
    cores = os.cpu_count() or 1
    versions = {"triomesh": await _triomesh_version()}
    envoy = envoy_binary()
    commands = dict(_VERSION_COMMANDS)
    if envoy is not None:
        commands = {"envoy": [envoy, "--version"], **commands}
    for name, argv in commands.items():
        versions[name] = await _first_line(argv)
    return Machine(
        name=f"{_slug(cpu)}-{cores}c",
        cpu=cpu,
        cores=cores,
        memory_gib=round(_mem_total_kib() / 1024 / 1024, 1),
        kernel=platform.release(),
        os=_os_name(),
        python=platform.python_version(),
        versions=versions,
    )


def _cpuinfo_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _mem_total_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 0


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "machine"


async def _first_line(argv: list[str]) -> str:
    """The first non-empty line a tool prints about itself (some print it on stderr, some exit 1)."""
    try:
        done = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
    except OSError:
        return "not installed"
    for line in (done.stdout + done.stderr).decode(errors="replace").splitlines():
        if line.strip():
            return line.strip()
    return "unknown"


async def _triomesh_version() -> str:
    argv = ["git", "-C", str(REPO), "describe", "--always", "--dirty", "--abbrev=12"]
    commit = await _first_line(argv)
    return f"commit {commit}"
