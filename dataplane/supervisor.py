"""``mesh-proxy --workers N``: N worker processes sharing the listeners, supervised by this one.

Each worker is a whole proxy (its own trio loop, relay engine, connection table and policy watcher) that binds
the listeners with SO_REUSEPORT, so the kernel spreads new connections across workers. This process owns no
traffic. It starts the workers, restarts one that dies (with back-off), forwards SIGTERM so they drain together,
and serves the admin endpoint on 15000 by asking every worker's private admin socket and merging the answers:
``/metrics``, ``/connections`` and ``/status`` describe the whole proxy.

Task tree:
    root nursery
    ├── watch_shutdown_signals  first SIGTERM/SIGINT -> drain; second -> stop now
    ├── serve_admin             merged answers (SupervisorAdmin)
    └── workers nursery
        └── _supervise (one per worker)     start, wait serving (first time), wait exit, restart
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, TypeVar

import msgspec
import trio

from dataplane.admin.fetch import FetchError, fetch
from dataplane.admin.local import PATHS, ready_response
from dataplane.admin.merge import merge_connections, merge_status
from dataplane.admin.schema import ConnectionsReport, StatusReport
from dataplane.admin.server import JSON, TEXT, Response, serve_admin
from dataplane.net.listener import open_listener
from dataplane.settings import ProxySettings
from dataplane.signals import watch_shutdown_signals
from dataplane.telemetry.aggregate import merge_expositions, supervisor_families
from dataplane.telemetry.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from dataplane.telemetry.metrics import STARTING

log = logging.getLogger(__name__)

FIRST_READY_TIMEOUT: Final = 30.0  # seconds for a worker to bind, load its policy and accept at start
BACKOFF_MIN: Final = 0.5  # seconds before restarting a worker that died
BACKOFF_MAX: Final = 30.0  # a worker that keeps dying is retried at most this often
HEALTHY_AFTER: Final = 60.0  # seconds alive after which a death restarts at BACKOFF_MIN again
_POLL: Final = 0.05

T = TypeVar("T")


class WorkerStartError(Exception):
    pass


class Worker:
    """One worker slot: the process running in it now, and how it fared."""

    def __init__(self, index: int, admin_name: str) -> None:
        self.index = index
        self.admin_name = admin_name
        self.process: trio.Process | None = None
        self.restarts = 0
        self._stopping = False

    def stopping(self) -> bool:
        """Set by the drain: a worker that exits now is not restarted."""
        return self._stopping

    def stop(self) -> None:
        self._stopping = True
        self.signal(signal.SIGTERM)

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signum)


class Supervisor:
    def __init__(self, settings: ProxySettings, argv: Sequence[str]) -> None:
        self.settings = settings
        self.argv = list(argv)
        self.started_at = time.time()
        self.draining = False
        self.workers = [Worker(i, f"triomesh-{os.getpid()}-worker-{i}") for i in range(settings.workers)]
        # Workers inherit the read end; only this process holds the write end, so it closes when we die.
        self._lifeline, self._lifeline_w = os.pipe()

    def _signal_all(self) -> None:
        for worker in self.workers:
            worker.signal(signal.SIGTERM)

    def command(self, worker: Worker) -> list[str]:
        return [
            sys.executable,
            "-m",
            "dataplane",
            *self.argv,
            "--worker-index",
            str(worker.index),
            "--worker-admin",
            worker.admin_name,
            "--worker-lifeline",
            str(self._lifeline),
        ]

    async def run(self) -> None:
        admin_listener = open_listener(self.settings.admin)  # fails here, before any worker, if the port is taken
        async with trio.open_nursery() as root:
            shutdown = trio.Event()
            root.start_soon(
                functools.partial(
                    watch_shutdown_signals,
                    shutdown,
                    root.cancel_scope,
                    draining="draining all workers",
                    stopping="stopping workers now",
                    before_stop=self._signal_all,
                )
            )
            await root.start(serve_admin, admin_listener, SupervisorAdmin(self))
            async with trio.open_nursery() as workers:
                for worker in self.workers:
                    await workers.start(self._supervise, worker)
                log.info("ready: %d workers; admin on %s", len(self.workers), self.settings.admin)
                await shutdown.wait()
                self.draining = True
                for worker in self.workers:
                    worker.stop()
            log.info("all workers exited; exiting")
            root.cancel_scope.cancel(reason="workers exited")

    async def _supervise(
        self, worker: Worker, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        backoff = BACKOFF_MIN
        first = True
        while not worker.stopping():
            process = await trio.lowlevel.open_process(
                self.command(worker), stdin=subprocess.DEVNULL, pass_fds=(self._lifeline,)
            )
            worker.process = process
            began = trio.current_time()
            try:
                if first:
                    await _wait_first_ready(worker, process)
                    task_status.started()
                    first = False
                code = await process.wait()
            finally:
                if process.returncode is None:  # cancelled: never leave a worker behind
                    process.kill()
                    with trio.CancelScope(shield=True):
                        await process.wait()
            worker.process = None
            if worker.stopping():
                log.info("worker %d (pid %d) exited with %d", worker.index, process.pid, code)
                return
            if trio.current_time() - began > HEALTHY_AFTER:
                backoff = BACKOFF_MIN
            worker.restarts += 1
            log.warning(
                "worker %d (pid %d) died with %s; restarting in %.1fs",
                worker.index,
                process.pid,
                _describe_exit(code),
                backoff,
            )
            await trio.sleep(backoff)
            backoff = min(BACKOFF_MAX, backoff * 2)


async def _wait_first_ready(worker: Worker, process: trio.Process) -> None:
    with trio.move_on_after(FIRST_READY_TIMEOUT):
        while process.returncode is None and process.poll() is None:
            try:
                status, body = await fetch(worker.admin_name, "/ready", timeout=1.0)
            except FetchError:
                status, body = 0, b""
            # Serving is enough: a worker that accepts but is not ready for a reason of its own (no valid
            # identity yet) reports it through the merged /ready, like a single proxy does.
            if status == 200 or (status == 503 and STARTING.encode() not in body):
                return
            await trio.sleep(_POLL)
        raise WorkerStartError(
            f"worker {worker.index} exited with {_describe_exit(process.returncode)} before it was ready"
        )
    raise WorkerStartError(f"worker {worker.index} was not ready after {FIRST_READY_TIMEOUT:g}s")


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "no exit code"
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"


class SupervisorAdmin:
    """Admin answers for the whole proxy, merged from every worker's own answers."""

    paths = PATHS

    def __init__(self, supervisor: Supervisor) -> None:
        self._sup = supervisor

    async def answer(self, path: str) -> Response | None:
        sup = self._sup
        match path:
            case "/live":
                return 200, TEXT, b"live\n"
            case "/ready":
                answers = await _each(sup.workers, _ready_answer)
                not_ready = [answer.decode().strip() for answer in answers if answer != b"ready"]
                ready = len(answers) == len(sup.workers) and not not_ready
                reason = f"{len(answers) - len(not_ready)}/{len(sup.workers)} workers ready"
                if not_ready:  # a worker's own reason (e.g. no valid identity) says what to fix
                    reason += f"; {not_ready[0]}"
                return ready_response(ready, sup.draining, reason)
            case "/metrics":
                texts = await self._gather_raw("/metrics")
                running = sum(1 for w in sup.workers if w.process is not None)
                restarts = sum(w.restarts for w in sup.workers)
                extra = supervisor_families(len(sup.workers), running, restarts)
                return 200, METRICS_CONTENT_TYPE, merge_expositions([t.decode() for t in texts], extra)
            case "/connections":
                reports = await self._gather("/connections", ConnectionsReport)
                return 200, JSON, msgspec.json.encode(merge_connections(reports))
            case "/status":
                statuses = await self._gather("/status", StatusReport)
                if not statuses:
                    return 503, TEXT, b"no worker answered\n"
                merged = merge_status(
                    statuses,
                    workers=len(sup.workers),
                    pid=os.getpid(),
                    started_at=sup.started_at,
                    uptime=time.time() - sup.started_at,
                    draining=sup.draining,
                )
                return 200, JSON, msgspec.json.encode(merged)
            case "/config":
                for body in await self._gather_raw("/config"):
                    return 200, JSON, body
                return 503, TEXT, b"no worker answered\n"
        return None

    async def _gather_raw(self, path: str) -> list[bytes]:
        return await _each(self._sup.workers, lambda w: _fetch_ok(w, path))

    async def _gather(self, path: str, kind: type[T]) -> list[T]:
        return [msgspec.json.decode(body, type=kind) for body in await self._gather_raw(path)]


async def _fetch_ok(worker: Worker, path: str) -> bytes | None:
    """The body of a 200 answer, or None when the worker is restarting or unreachable."""
    if worker.process is None:
        return None
    try:
        status, body = await fetch(worker.admin_name, path)
    except FetchError as exc:
        log.debug("worker %d: %s", worker.index, exc)
        return None
    return body if status == 200 else None


async def _ready_answer(worker: Worker) -> bytes | None:
    """``ready``, or the worker's reason for not being ready; None when it does not answer."""
    if worker.process is None:
        return None
    try:
        status, body = await fetch(worker.admin_name, "/ready")
    except FetchError as exc:
        log.debug("worker %d: %s", worker.index, exc)
        return None
    if status == 200:
        return b"ready"
    return b"worker %d %s" % (worker.index, body.strip())


async def _each(workers: Sequence[Worker], ask: Callable[[Worker], Awaitable[bytes | None]]) -> list[bytes]:
    """Ask every worker at once; answers in worker order, unanswered ones left out."""
    answers: list[bytes | None] = [None] * len(workers)

    async def one(i: int, worker: Worker) -> None:
        answers[i] = await ask(worker)

    async with trio.open_nursery() as nursery:
        for i, worker in enumerate(workers):
            nursery.start_soon(one, i, worker)
    return [a for a in answers if a is not None]


async def run_supervisor(settings: ProxySettings, argv: Sequence[str]) -> None:
    await Supervisor(settings, argv).run()
