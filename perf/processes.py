"""Processes of a benchmark: proxies, upstreams and load generators, pinned, waited for, and always stopped.

The proxy under test runs on core 0 and everything else (upstream, load generator, this harness) on core 1, so
the proxy has its core to itself. ``Services`` stops the children it started, last first, on every way out:
errors, Ctrl-C and SIGTERM (the CLI turns it into a cancellation). Not PR_SET_PDEATHSIG: it fires when the
*thread* that forked exits, and trio forks from worker threads that retire after a few idle seconds.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import trio

from dataplane.net.addr import SockAddr
from perf.probes import is_listening

PROXY_CORE: Final = 0
LOAD_CORE: Final = 1
READY_TIMEOUT: Final = 15.0  # seconds; Envoy cold-starts in about 0.5 s, the Python proxy in about 0.3 s
STOP_GRACE: Final = 5.0  # seconds between SIGTERM and SIGKILL
_POLL: Final = 0.05  # seconds between readiness probes
_FIRST_PORT: Final = 10_000  # listeners of the run take ports from here up to the ephemeral range


class BenchError(Exception):
    """An expected failure of a benchmark step (a tool missing, a process that would not start)."""


def pinned(core: int | str, argv: Sequence[str]) -> list[str]:
    return ["taskset", "-c", str(core), *argv]


def free_port(host: str = "127.0.0.1") -> int:
    """A port no socket uses now on any address, below the kernel's ephemeral range, handed out round-robin.

    Below the ephemeral range: a port the kernel picked would be one it also hands to outgoing connections, and
    after an idle run tens of thousands of them (open or in TIME_WAIT, from 127.0.0.2 too) would make triomesh's
    wildcard listeners fail with EADDRINUSE. Checked on the wildcard address, which conflicts with them all.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(_PORTS.span):
        port = _PORTS.next()
        with socket.socket(family) as sock:
            try:
                sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
            except OSError:
                continue
            return port
    raise BenchError(f"no free port in {_PORTS.first}-{_PORTS.first + _PORTS.span - 1}")


class _PortCursor:
    """Round-robin over the ports below the ephemeral range, from an offset of this process's own (so two
    harnesses running at once rarely try the same ports)."""

    def __init__(self, first: int, end: int) -> None:
        self.first = first
        self.span = end - first
        self._offset = os.getpid() * 7919 % self.span

    def next(self) -> int:
        self._offset = (self._offset + 1) % self.span
        return self.first + self._offset


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _DEFAULT_EPHEMERAL_START


_DEFAULT_EPHEMERAL_START: Final = 32768
_PORTS: Final = _PortCursor(_FIRST_PORT, max(_ephemeral_start(), _FIRST_PORT + 1000))


def pin_self(core: int = LOAD_CORE) -> None:
    """Keep the harness itself off the proxy's core (when there is more than one)."""
    if core in os.sched_getaffinity(0) and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {core})


class Service:
    """One long-running child, started by ``Services.start`` and stopped by its ``Services``."""

    def __init__(self, name: str, proc: trio.Process, log: Path) -> None:
        self.name = name
        self.proc = proc
        self.log = log

    def __repr__(self) -> str:
        return f"<Service {self.name} pid={self.pid} returncode={self.proc.returncode}>"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 6) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " / ".join(text.strip().splitlines()[-lines:]) or "(empty log)"

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_GRACE; shielded, so it also runs inside a cancelled scope."""
        with trio.CancelScope(shield=True):
            if self.proc.poll() is not None:
                return
            self.proc.terminate()
            with trio.move_on_after(STOP_GRACE):
                await self.proc.wait()
                return
            self.proc.kill()
            await self.proc.wait()


class Services:
    """The children of one measurement. ``async with Services(dir) as s: await s.start(...)``: on exit, every
    child is stopped, last started first."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._started: list[Service] = []

    async def __aenter__(self) -> Services:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop_all()

    async def stop_all(self) -> None:
        while self._started:
            await self._started.pop().stop()

    async def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        core: int | str,
        ready: SockAddr | None = None,
        cwd: Path | None = None,
    ) -> Service:
        """Start ``argv`` on ``core`` (output to ``<log_dir>/<name>.log``); with ``ready``, return once that
        TCP address accepts connections. Raises BenchError if it exits or never listens."""
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as out:
            try:
                proc = await trio.lowlevel.open_process(
                    pinned(core, argv),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=cwd,
                )
            except FileNotFoundError as exc:
                raise BenchError(f"{name}: {exc.filename} not found") from None
        service = Service(name, proc, log)
        self._started.append(service)
        if ready is not None:
            await wait_listening(service, ready)
        return service


async def wait_listening(service: Service, addr: SockAddr, timeout: float = READY_TIMEOUT) -> None:
    """Until ``addr`` is in LISTEN state in the service's network namespace. Asked of the kernel, not by
    connecting: a probe connection would be relayed by an L4 proxy and taken for a test by iperf3."""
    with trio.move_on_after(timeout):
        while not is_listening(addr, service.pid):
            if not service.running():
                raise BenchError(f"{service.name} exited with {service.proc.returncode}: {service.log_tail()}")
            await trio.sleep(_POLL)
        return
    raise BenchError(f"{service.name} did not listen on {addr[0]}:{addr[1]} within {timeout:g}s")


async def run_tool(argv: Sequence[str], *, timeout: float, core: int | str = LOAD_CORE) -> str:
    """Run a load generator to completion on ``core``; its stdout, or BenchError with the end of its output."""
    try:
        with trio.fail_after(timeout):
            done = await trio.run_process(
                pinned(core, argv),
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
    except trio.TooSlowError:
        raise BenchError(f"{argv[0]} did not finish within {timeout:g}s") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()[-3:]
        raise BenchError(f"{argv[0]} exited with {done.returncode}: {' / '.join(tail)}")
    return done.stdout.decode(errors="replace")
