"""``mesh-proxy`` as a real process on loopback (``python -m dataplane`` from this checkout), and what its admin
endpoint says about the connections it closed."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgspec
import trio

from ctl.client import AdminClient, parse_admin_url
from tests.dataplane.proxy_harness import free_port

CHECKOUT: Final = Path(__file__).resolve().parents[3]
START_TIMEOUT: Final = 30.0  # seconds for the interpreter to start, load the identity and bind
RECORD_TIMEOUT: Final = 15.0  # seconds for refused connections to show up as closed records
POLL: Final = 0.05  # the admin endpoint of another process is polled: there is nothing to wait on
_SAMPLE: Final = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
_LABEL: Final = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

Record = dict[str, Any]
"""One /connections record as JSON, read field by field so the test does not depend on the schema's version."""


@dataclass
class MeshProxy:
    proc: subprocess.Popen[bytes]
    admin: AdminClient
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def report(self) -> dict[str, Any]:
        answer = await trio.to_thread.run_sync(self.admin.get, "/connections")
        assert answer.status == 200, answer
        document = msgspec.json.decode(answer.body)
        assert isinstance(document, dict)
        return document

    async def last_id(self) -> int:
        """The newest connection id so far: records above it belong to what the test does next."""
        document = await self.report()
        return max((rec["id"] for rec in document["open"] + document["recent"]), default=0)

    async def open_since(self, baseline: int) -> list[Record]:
        document = await self.report()
        return [rec for rec in document["open"] if rec["id"] > baseline]

    async def settled_since(self, baseline: int) -> list[Record]:
        """The connections opened after ``baseline``, once none of them is open any more (bounded wait)."""
        with trio.fail_after(RECORD_TIMEOUT):
            while await self.open_since(baseline):
                await trio.sleep(POLL)
        document = await self.report()
        return sorted((rec for rec in document["recent"] if rec["id"] > baseline), key=lambda rec: rec["id"])

    async def closed_since(self, baseline: int, count: int) -> list[Record]:
        """The connections opened after ``baseline`` once ``count`` of them are closed (bounded wait); fails if
        more than ``count`` were opened."""
        with trio.move_on_after(RECORD_TIMEOUT):
            while True:
                document = await self.report()
                closed = [rec for rec in document["recent"] if rec["id"] > baseline]
                still_open = [rec for rec in document["open"] if rec["id"] > baseline]
                if len(closed) >= count and not still_open:
                    break
                await trio.sleep(POLL)
        assert len(closed) == count and not still_open, f"{closed}\nstill open: {still_open}\n{self.output()[-3000:]}"
        return sorted(closed, key=lambda rec: rec["id"])

    async def metric_text(self) -> str:
        return await trio.to_thread.run_sync(self.admin.metrics)

    async def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` carrying ``labels``."""
        return metric_sum(await self.metric_text(), name, **labels)


def metric_sum(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match["name"] != name:
            continue
        have = dict(_LABEL.findall(match["labels"] or ""))
        if all(have.get(key) == value for key, value in labels.items()):
            total += float(match["value"])
    return total


@contextmanager
def mesh_proxy(
    workdir: Path,
    *,
    identity: Path,
    policy: str,
    forwards: Sequence[str] = (),
    inbound_forwards: Sequence[str] = (),
) -> Iterator[MeshProxy]:
    """A ready ``mesh-proxy`` with ``policy`` (YAML text); SIGTERM, then kill if it lingers, at the end."""
    workdir.mkdir(parents=True, exist_ok=True)
    policy_path = workdir / "policy.yaml"
    policy_path.write_text(policy)
    admin = f"127.0.0.1:{free_port()}"
    argv = [sys.executable, "-m", "dataplane", "--admin", admin, "--mark", "0", "--ipv6", "off"]
    argv += ["--outbound-port", str(free_port()), "--inbound-port", str(free_port()), "--drain-timeout", "1s"]
    argv += ["--identity", str(identity), "--policy", str(policy_path)]
    for forward in forwards:
        argv += ["--forward", forward]
    for forward in inbound_forwards:
        argv += ["--inbound-forward", forward]
    log = workdir / "proxy.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=out, cwd=CHECKOUT)
    proxy = MeshProxy(proc, AdminClient(parse_admin_url(admin), timeout=2.0), log)
    try:
        _wait_ready(proxy)
        yield proxy
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def inbound_proxy(
    workdir: Path, identity: Path, mtls: str, listens: Sequence[int], app_port: int
) -> Iterator[MeshProxy]:
    """A proxy whose ``--inbound-forward`` listeners on ``listens`` lead to the application, ``inbound.mtls``
    set to ``mtls``."""
    policy = f"name: g4-{mtls}\ninbound:\n  mtls: {mtls}\n"
    forwards = [f"127.0.0.1:{listen}=127.0.0.1:{app_port}" for listen in listens]
    with mesh_proxy(workdir, identity=identity, policy=policy, inbound_forwards=forwards) as running:
        yield running


def _wait_ready(proxy: MeshProxy) -> None:
    # A module fixture (sync) waiting on another process: there is no trio clock to use here.
    deadline = time.monotonic() + START_TIMEOUT  # noqa: TID251
    answer = (False, "not started")
    while time.monotonic() < deadline and proxy.proc.poll() is None:  # noqa: TID251
        try:
            answer = proxy.admin.ready()
        except Exception as exc:  # not listening yet
            answer = (False, str(exc))
        if answer[0]:
            return
        time.sleep(POLL)  # noqa: TID251
    raise AssertionError(f"mesh-proxy not ready: {answer}, exit {proxy.proc.poll()}\n{proxy.output()[-3000:]}")
