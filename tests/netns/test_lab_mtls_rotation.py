"""Every pod's SVID rotated five times, two seconds apart, with `meshctl lab rotate`'s code, while h2load keeps
HTTP/1.1 and h2 requests going from pod a to pod b (new connections every round, so new handshakes meet the new
certificates) and one opaque TCP connection stays open across all of it: no request fails, the open connection
keeps working, and each proxy serves the serial it was given."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
import trio

from ctl.lab.lab import Pod
from ctl.lab.lines import LineReader
from ctl.lab.rotate import rotate
from ctl.lab.topology import APP_PORT, HTTP_PORT, Mode
from tests.dataplane.http2.hello import hello
from tests.netns.labs import connect_from, connections, find, lab, listen_in, run_in, serve_h2
from tests.tools import need

pytestmark = [pytest.mark.netns, pytest.mark.usefixtures("require_netns")]

H2_PORT = 8093
ROTATIONS = 5
INTERVAL = 2.0  # seconds between rotations ("every few seconds")
REQUESTS = 200  # per h2load round; a round takes a fraction of INTERVAL
MAX_ROUNDS = 200  # per load: the loops end when the rotations do, this only bounds them
SUMMARY = re.compile(
    rb"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout"
)
STATUS = re.compile(rb"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")


@dataclass(frozen=True)
class Round:
    load: str
    started: float
    ended: float
    output: str

    def problems(self) -> list[str]:
        """Why this round is not REQUESTS requests all answered 2xx (empty when it is)."""
        summary, status = SUMMARY.search(self.output.encode()), STATUS.search(self.output.encode())
        if summary is None or status is None:
            return [f"{self.load}: no h2load summary in {self.output[-500:]!r}"]
        total, _started, done, succeeded, failed, errored, timeout = (int(n) for n in summary.groups())
        problems = []
        if not total == done == succeeded == REQUESTS or failed or errored or timeout:
            problems.append(f"{self.load}: {summary.group(0).decode()}")
        if int(status.group(1)) != REQUESTS:
            problems.append(f"{self.load}: {status.group(0).decode()}")
        return problems


async def _load(a: Pod, name: str, argv: list[str], rounds: list[Round], stop: trio.Event) -> None:
    for _ in range(MAX_ROUNDS):
        if stop.is_set():
            return
        started = trio.current_time()
        output = await run_in(a, need("h2load"), "-n", str(REQUESTS), "-c", "4", *argv)
        rounds.append(Round(name, started, trio.current_time(), output))


async def _rounds_since(rounds: list[Round], since: float) -> None:
    """Waits until each load has completed a round that started after ``since``."""
    while {r.load for r in rounds if r.started > since} != {"http1", "h2"}:
        await trio.sleep(0.05)


async def test_rotating_every_pods_svid_under_http1_and_h2_load_fails_no_request() -> None:
    async with lab("rt", Mode.REDIRECT, prefix="tlm") as the_lab:
        a, b = the_lab.pod("a"), the_lab.pod("b")
        rounds: list[Round] = []
        served: dict[str, list[str]] = {pod.name: [] for pod in the_lab.pods}
        with trio.fail_after(120):
            for pod in the_lab.pods:
                identity = (await trio.to_thread.run_sync(pod.admin().status)).identity
                assert identity is not None and identity.serial is not None and identity.spiffe_id == pod.spiffe_id
                served[pod.name].append(identity.serial)
            kept = await connect_from(a, b.address, APP_PORT)
            lines = LineReader(kept)
            assert (await lines.readline() or b"").startswith(b"hello from b")
            stop = trio.Event()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(serve_h2, await listen_in(b, b.address, H2_PORT), hello)
                async with trio.open_nursery() as load_nursery:
                    load_nursery.start_soon(
                        _load, a, "http1", ["--h1", f"http://{b.address}:{HTTP_PORT}/rotation"], rounds, stop
                    )
                    load_nursery.start_soon(
                        _load, a, "h2", ["-m", "10", f"http://{b.address}:{H2_PORT}/"], rounds, stop
                    )
                    await _rounds_since(rounds, 0.0)
                    for n in range(ROTATIONS):
                        rotations = await rotate(the_lab.prefix)
                        rotated_at = trio.current_time()
                        assert [r.pod for r in rotations] == ["a", "b"]
                        for rotation in rotations:
                            pod = the_lab.pod(rotation.pod)
                            assert rotation.old_serial == served[pod.name][-1]
                            identity = (await trio.to_thread.run_sync(pod.admin().status)).identity
                            assert identity is not None and identity.valid
                            assert (identity.spiffe_id, identity.serial) == (pod.spiffe_id, rotation.new_serial)
                            served[pod.name].append(rotation.new_serial)
                        # The connection opened before any rotation still carries lines both ways.
                        await kept.send_all(b"rotation %d\n" % n)
                        assert await lines.readline() == b"b echoes: rotation %d" % n
                        await _rounds_since(rounds, rotated_at)
                        await trio.sleep(max(0.0, INTERVAL - (trio.current_time() - rotated_at)))
                    stop.set()
                nursery.cancel_scope.cancel()
            await kept.aclose()
        for pod_serials in served.values():
            assert len(set(pod_serials)) == ROTATIONS + 1, served
        assert {r.load for r in rounds} == {"http1", "h2"}
        assert [problem for r in rounds for problem in r.problems()] == []
        # Both loads ran a whole round before the first rotation and after each one (_rounds_since).
        assert len(rounds) >= 2 * (ROTATIONS + 1)
        # And all of it went over mesh mTLS, each proxy having verified the other pod's identity.
        for pod, direction, port in ((a, "outbound", HTTP_PORT), (b, "inbound", HTTP_PORT), (b, "inbound", H2_PORT)):
            report = await connections(pod)
            carried = find([*report.open, *report.recent], direction, f"{b.address}:{port}")
            assert carried, (pod.name, direction, port)
            peers = {conn.server_id if direction == "outbound" else conn.client_id for conn in carried}
            assert {conn.tls for conn in carried} == {"true"}, carried
            assert peers == {b.spiffe_id if direction == "outbound" else a.spiffe_id}, carried
