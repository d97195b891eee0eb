"""triomesh as it runs for real: a transparent sidecar pair in the network-namespace lab.

Two pods (``ctl.lab``): the load generator in pod a connects to pod b's address; a's iptables send it to a's
outbound proxy, which connects to b, where b's iptables send it to b's inbound proxy, which connects to the
upstream (nginx or iperf3) in pod b. Both proxies are pinned to core 0, everything else to core 1, and CPU is
summed over both. The second configuration, ``inbound``, runs the load generator as the proxy's UID in pod a,
which mesh-init exempts: one hop (b's inbound proxy) instead of two, so the difference is the outbound hop.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import msgspec
import trio

from ctl.lab.lab import PROXY_UID, Lab
from ctl.lab.topology import Mode
from dataplane.net.addr import SockAddr
from perf import peers
from perf.machine import describe
from perf.measure import Load, Target, run_load, start_iperf3_server
from perf.parse import ToolOutputError
from perf.peers import Layer
from perf.processes import LOAD_CORE, PROXY_CORE, BenchError, Services, run_tool, wait_listening
from perf.results import RunResult, RunSettings, Sample
from perf.scenarios import BY_NAME, Scenario

SCENARIOS: Final = ("rest", "http1", "h2c", "latency", "bulk_1")
CONFIGURATIONS: Final = ("sidecars", "inbound")
HTTP1_PORT: Final = 8090  # the demo app has 8080 and 8081 (lab topology's APP_PORT, HTTP_PORT)
H2C_PORT: Final = 8092
IPERF3_PORT: Final = 5201
UP_TIMEOUT: Final = 60.0


async def run_lab(
    prefix: str,
    mode: str,
    rounds: int,
    duration: int,
    rate: int,
    work_dir: Path,
    progress: Callable[[str], None],
) -> RunResult:
    machine = await describe()
    started = _now()
    await trio.Path(work_dir).mkdir(parents=True, exist_ok=True)
    lab = Lab(prefix, pods=2, mode=Mode(mode), ipv6=False, mtls=False)  # plaintext sidecars, as measured so far
    with trio.fail_after(UP_TIMEOUT):
        state = await lab.up()
    samples: list[Sample] = []
    try:
        proxies = [pod.proxy_pid for pod in state.pods if pod.proxy_pid is not None]
        for pid in proxies:
            # -a: every thread of the proxy, on the proxy core.
            await run_tool(["taskset", "-a", "-p", "-c", str(PROXY_CORE), str(pid)], timeout=10)
        client, server = lab.pod("a"), lab.pod("b")
        in_client, in_server = ("ip", "netns", "exec", client.netns), ("ip", "netns", "exec", server.netns)
        as_proxy_uid = ("setpriv", f"--reuid={PROXY_UID}", f"--regid={PROXY_UID}", "--clear-groups")
        enter = {"sidecars": in_client, "inbound": (*in_client, *as_proxy_uid)}
        async with Services(work_dir) as upstream:
            nginx = peers.nginx_upstream(str(work_dir), SockAddr("0.0.0.0", HTTP1_PORT), SockAddr("0.0.0.0", H2C_PORT))
            (work_dir / "upstream.conf").write_text(nginx)
            argv = [*in_server, "nginx", "-p", str(work_dir), "-e", str(work_dir / "error.log")]
            nginx_service = await upstream.start(
                "upstream-nginx", [*argv, "-c", str(work_dir / "upstream.conf")], core=LOAD_CORE
            )
            await wait_listening(nginx_service, SockAddr(server.address, HTTP1_PORT))
            await wait_listening(nginx_service, SockAddr(server.address, H2C_PORT))
            load = Load(duration=duration, fixed_rate=rate, idle_connections=0)
            for round_no in range(1, rounds + 1):
                for name in SCENARIOS:
                    scenario = BY_NAME[name]
                    for configuration in CONFIGURATIONS:
                        sample = Sample(round=round_no, scenario=name, proxy=configuration, layer=Layer.L4.value)
                        try:
                            figures = await _one(
                                scenario, server.address, proxies, enter[configuration], load, work_dir, in_server
                            )
                        except (BenchError, ToolOutputError) as exc:
                            sample = msgspec.structs.replace(sample, error=str(exc))
                        else:
                            sample = msgspec.structs.replace(sample, figures=figures)
                        samples.append(sample)
                        progress(f"[{round_no}/{rounds}] {name:<8} {configuration:<9} {sample.error or sample.figures}")
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(UP_TIMEOUT):
            await lab.down()
    return RunResult(
        machine=machine,
        settings=RunSettings(
            mode="lab",
            smoke=False,
            rounds=rounds,
            duration_s=duration,
            scenarios=list(SCENARIOS),
            proxies=list(CONFIGURATIONS),
            idle_connections=0,
            fixed_rate=rate,
            lab_mode=mode,
        ),
        started_at=started,
        finished_at=_now(),
        samples=samples,
    )


async def _one(
    scenario: Scenario,
    server_ip: str,
    proxies: list[int],
    enter: tuple[str, ...],
    load: Load,
    work_dir: Path,
    in_server: tuple[str, ...],
) -> dict[str, float]:
    async with Services(work_dir) as services:
        if scenario.name == "bulk_1":
            address = await start_iperf3_server(services, SockAddr("0.0.0.0", IPERF3_PORT), in_server)
            address = SockAddr(server_ip, address.port)
        else:
            address = SockAddr(server_ip, H2C_PORT if scenario.h2c else HTTP1_PORT)
        return await run_load(scenario, Target(address, address.port, proxies, enter), load)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
