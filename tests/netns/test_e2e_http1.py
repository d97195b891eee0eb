"""HTTP/1.1 and h2 load through the lab's sidecars, intercepted: curl moves large bodies both ways (checksummed),
h2load multiplexes thousands of streams, and every Severe smuggling case of the AWS corpus is refused with nothing
reaching the application, in both inbound modes."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import trio

from ctl.lab.topology import Mode
from tests.apps import origin
from tests.dataplane.http1.corpus import load_cases
from tests.dataplane.http2.hello import hello
from tests.netns.labs import app_in, connect_from, connections, find, lab, listen_in, run_in, serve_h2
from tests.tools import need

pytestmark = [pytest.mark.netns, pytest.mark.usefixtures("require_netns")]

ORIGIN_PORT = 8090
H2_PORT = 8091
RECORDER_PORT = 8092
SEVERE = [case for case in load_cases() if case.tier == "Severe"]


async def _record(listener: trio.SocketListener, seen: list[bytes]) -> None:
    async def one(stream: trio.SocketStream) -> None:
        async with stream:
            while data := await stream.receive_some(65536):
                seen.append(data)

    await trio.serve_listeners(one, [listener])


@pytest.mark.parametrize("mode", [Mode.REDIRECT, Mode.TPROXY], ids=lambda m: m.value)
async def test_bodies_h2load_and_smuggling_through_both_sidecars(mode: Mode, tmp_path: Path) -> None:
    body = os.urandom(3 * 1024 * 1024 + 17)
    upload = tmp_path / "upload.bin"
    upload.write_bytes(body)
    download = tmp_path / "download.bin"
    async with lab(f"pb{mode.value[0]}", mode) as the_lab:
        a, b = the_lab.pod("a"), the_lab.pod("b")
        curl = [need("curl"), "-sS", "--noproxy", "*"]
        with trio.fail_after(120):
            async with app_in(b, "origin", "--host", b.address, "--port", str(ORIGIN_PORT)):
                url = f"http://{b.address}:{ORIGIN_PORT}"
                out = await run_in(a, *curl, "-H", "Transfer-Encoding: chunked", "--data-binary", f"@{upload}", url)
                report = json.loads(out)
                assert report["body_length"] == len(body)
                assert report["body_sha256"] == hashlib.sha256(body).hexdigest()
                await run_in(a, *curl, "-o", str(download), f"{url}/bytes/5000001")
                assert download.read_bytes() == origin.pattern(5_000_001)

            seen: list[bytes] = []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(serve_h2, await listen_in(b, b.address, H2_PORT), hello)
                nursery.start_soon(_record, await listen_in(b, b.address, RECORDER_PORT), seen)
                h2_url = f"http://{b.address}:{H2_PORT}/"
                out = await run_in(a, need("h2load"), "-n", "3000", "-c", "4", "-m", "20", h2_url)
                assert "3000 succeeded, 0 failed, 0 errored" in out, out[-600:]
                for pod, direction in ((a, "outbound"), (b, "inbound")):
                    report = await connections(pod)
                    h2 = find([*report.open, *report.recent], direction, f"{b.address}:{H2_PORT}")
                    assert {c.protocol for c in h2} == {"h2"} and sum(c.requests for c in h2) == 3000, (pod.name, h2)
                for case in SEVERE:
                    stream = await connect_from(a, b.address, RECORDER_PORT)
                    await stream.send_all(case.raw)
                    answer = b""
                    with trio.move_on_after(5) as scope:
                        while chunk := await stream.receive_some(65536):  # until the proxy closes
                            answer += chunk
                    assert not scope.cancelled_caught, (case.id, answer[:200])
                    await stream.aclose()
                    assert answer.startswith(b"HTTP/1.1 4"), (case.id, answer[:80])
                await trio.sleep(0.5)
                assert seen == [], "bytes of a refused request reached the application"
                nursery.cancel_scope.cancel()
