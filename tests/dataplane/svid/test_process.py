"""``mesh-proxy --identity`` as a real process on loopback: a bad directory at start is one clear log line and a
503, not an exit; a valid identity written later makes it ready; SIGTERM still exits 0."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from ctl.client import AdminClient, parse_admin_url
from tests.dataplane.proxy_harness import free_port
from tests.dataplane.svid.sets import IdentityDir

START_TIMEOUT = 20.0  # seconds for the interpreter to start and bind
POLL = 0.05  # the process's admin endpoint is polled: there is nothing to wait on across processes


async def ready_answer(client: AdminClient, *, until: str, timeout: float) -> tuple[bool, str]:
    """Poll /ready until its text starts with ``until`` (bounded); the last answer."""
    answer = (False, "")
    with trio.move_on_after(timeout):
        while not answer[1].startswith(until):
            try:
                answer = await trio.to_thread.run_sync(client.ready)
            except Exception:  # not listening yet
                answer = (False, "")
            if not answer[1].startswith(until):
                await trio.sleep(POLL)
    return answer


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_bad_identity_directory_at_start_is_a_log_line_and_503_then_a_valid_one_makes_it_ready(
    directory: IdentityDir, tmp_path: Path, workers: int
) -> None:
    admin = free_port()
    log = tmp_path / "proxy.log"
    flags = ["--identity", str(directory.path), "--admin", f"127.0.0.1:{admin}", "--mark", "0", "--ipv6", "off"]
    flags += ["--workers", str(workers)]
    flags += ["--outbound-port", str(free_port()), "--inbound-port", str(free_port())]
    client = AdminClient(parse_admin_url(f"127.0.0.1:{admin}"), timeout=1.0)
    cwd = Path(__file__).resolve().parents[3]  # the checkout: -m dataplane runs this working copy
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "dataplane", *flags], stdout=out, stderr=out, cwd=cwd)
    try:
        missing = directory.path / "cert.pem"
        problem = f"no valid identity ({missing}: no such file)"
        # With workers the supervisor serves /ready, naming the first worker's own reason.
        expected = (
            f"not ready: {problem}" if workers == 1 else f"not ready: 0/2 workers ready; worker 0 not ready: {problem}"
        )
        ready, text = await ready_answer(client, until=expected, timeout=START_TIMEOUT)
        assert (ready, text) == (False, expected), log.read_text()
        assert proc.poll() is None
        refusals = [line for line in log.read_text().splitlines() if "refused" in line]
        assert 1 <= len(refusals) <= workers and refusals[0].endswith(  # workers start one after another
            f"identity from {directory.path} refused: {missing}: no such file; "
            "not ready until a valid identity is written there"
        )
        assert "Traceback" not in log.read_text()

        directory.publish()
        assert await ready_answer(client, until="ready", timeout=2.0) == (True, "ready")
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            assert await trio.to_thread.run_sync(proc.wait) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
