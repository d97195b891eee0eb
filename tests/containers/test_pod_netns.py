"""The example pod, run for real in network namespaces: mesh-init with the init container's flags, the demo
app and mesh-proxy with theirs, and the sidecar's exec probes, answering as docs/kubernetes.md says.

- before the proxy runs, both probes fail with one clear line (no traceback);
- the startup probe passes within its budget; readiness and liveness pass;
- a client outside the pod reaches the app through the proxy (tproxy keeps the client's address);
- on SIGTERM with a connection open, readiness fails ("draining") while liveness still passes, so the
  kubelet takes the pod out of service without killing the draining proxy; the proxy exits 0 once the
  connection closes.
"""

from __future__ import annotations

import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from ctl.lab.lines import LineReader
from ctl.netns import netns_socket
from tests.containers.kubelet import CLIENT_IP, POD_IP, POD_NAME, Pod, configmap_volume, pod_network
from tests.containers.manifests import Variant, container, rendered

pytestmark = [pytest.mark.netns, pytest.mark.usefixtures("require_netns")]

PROBE_POLL = 0.2  # seconds between attempts while waiting for a state change (real processes: real time)


async def _probe(pod: Pod, sidecar: dict[str, Any], kind: str) -> subprocess.CompletedProcess[bytes]:
    probe = sidecar[kind]
    with trio.fail_after(probe["timeoutSeconds"] + 10):  # a loaded CI machine starts Python slowly
        return await trio.run_process(
            pod.command(sidecar, probe["exec"]["command"]),
            env=pod.env(sidecar),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )


async def _until(pod: Pod, sidecar: dict[str, Any], kind: str, *, passing: bool, within: float) -> str:
    """Re-run a probe until it passes (or fails); returns its output."""
    last = ""
    with trio.move_on_after(within):
        while True:
            done = await _probe(pod, sidecar, kind)
            last = (done.stdout + done.stderr).decode()
            if (done.returncode == 0) == passing:
                return last
            await trio.sleep(PROBE_POLL)
    pytest.fail(f"{kind} did not {'pass' if passing else 'fail'} within {within}s; last output: {last}")


@asynccontextmanager
async def _running(pod: Pod, c: dict[str, Any], log: Path) -> AsyncIterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(pod.command(c), env=pod.env(c), stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


async def _open_from_client(network_client: str, port: int) -> trio.SocketStream:
    sock = trio.socket.from_stdlib_socket(netns_socket(network_client, socket.AF_INET))
    try:
        await sock.connect((POD_IP, port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


@pytest.mark.parametrize("variant", list(Variant), ids=lambda v: v.name.lower())
async def test_pod_starts_serves_and_drains_as_the_manifest_says(variant: Variant, tmp_path: Path) -> None:
    resources = rendered(variant)
    init, sidecar, app = (container(resources, n) for n in ("mesh-init", "mesh-proxy", "demo"))
    app_port = app["ports"][0]["containerPort"]
    with pod_network() as network, configmap_volume(resources, "policy") as policy_dir:
        pod = Pod(network, resources, policy_dir)

        with trio.fail_after(60):
            done = await trio.run_process(
                pod.command(init), env=pod.env(init), capture_stdout=True, capture_stderr=True, check=False
            )
        assert done.returncode == 0, (done.stdout + done.stderr).decode()

        # Nothing listens on the admin port yet: each probe fails with one line, not a traceback.
        for kind in ("readinessProbe", "livenessProbe"):
            failed = await _probe(pod, sidecar, kind)
            message = failed.stderr.decode()
            assert failed.returncode != 0, kind
            assert "Traceback" not in message and "127.0.0.1:15000" in message, message
            assert len(message.strip().splitlines()) == 1, message

        async with _running(pod, app, tmp_path / "app.log"), _running(pod, sidecar, tmp_path / "proxy.log") as proxy:
            startup = sidecar["startupProbe"]
            budget = startup["periodSeconds"] * startup["failureThreshold"]
            assert "ready" in await _until(pod, sidecar, "startupProbe", passing=True, within=budget)
            assert (await _probe(pod, sidecar, "readinessProbe")).returncode == 0
            assert (await _probe(pod, sidecar, "livenessProbe")).returncode == 0

            with trio.fail_after(20):
                stream = await _open_from_client(network.client, app_port)
                greeting = ((await LineReader(stream).readline()) or b"").decode()
            seen_as = POD_IP if variant is Variant.REDIRECT else CLIENT_IP
            assert greeting.startswith(f"hello from {POD_NAME} ({POD_IP}:{app_port}); you are {seen_as}:"), greeting

            proxy.send_signal(signal.SIGTERM)
            drain_note = await _until(pod, sidecar, "readinessProbe", passing=False, within=10)
            assert "draining" in drain_note, drain_note
            assert (await _probe(pod, sidecar, "livenessProbe")).returncode == 0
            await stream.aclose()
            with trio.fail_after(20):
                while proxy.poll() is None:
                    await trio.sleep(PROBE_POLL)
            assert proxy.returncode == 0, (tmp_path / "proxy.log").read_text()
