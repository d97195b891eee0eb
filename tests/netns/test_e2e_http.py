"""HTTP through the lab's sidecars, intercepted as a user would run it: gRPC (h2c) with grpcio on both ends,
WebSocket (HTTP/1.1 Upgrade) with trio-websocket, and curl over HTTP/2 prior knowledge, in both inbound modes."""

from __future__ import annotations

import sys

import pytest
import trio

from ctl.lab.topology import Mode
from tests.netns.labs import app_in, connections, find, lab, run_in, samples

pytestmark = [pytest.mark.netns, pytest.mark.usefixtures("require_netns")]

GRPC_PORT = 50051
WS_PORT = 8765


@pytest.mark.parametrize("mode", [Mode.REDIRECT, Mode.TPROXY], ids=lambda m: m.value)
async def test_grpc_websocket_and_h2c_through_both_sidecars(mode: Mode) -> None:
    async with lab(f"ph{mode.value[0]}", mode) as the_lab:
        a, b = the_lab.pod("a"), the_lab.pod("b")
        with trio.fail_after(90):
            async with app_in(b, "grpc_app", "--host", b.address, "--port", str(GRPC_PORT)):
                out = await run_in(
                    a, sys.executable, "-m", "tests.apps.grpc_app", "--check", f"{b.address}:{GRPC_PORT}"
                )
                assert out.strip().endswith("ok"), out
                # curl speaks h2c with prior knowledge to the gRPC server: a gRPC error without a gRPC body.
                out = await run_in(
                    a, "curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_version}",
                    f"http://{b.address}:{GRPC_PORT}/",
                )  # fmt: skip
                assert out == "2", out
            async with app_in(b, "ws_echo", "--host", b.address, "--port", str(WS_PORT)):
                url = f"ws://{b.address}:{WS_PORT}/"
                out = await run_in(a, sys.executable, "-m", "tests.apps.ws_echo", "--check", url, "--count", "10000")
                assert out.strip() == "10000/10000", out

        for pod, direction in ((a, "outbound"), (b, "inbound")):
            report = await connections(pod)
            grpc_conns = find([*report.open, *report.recent], direction, f"{b.address}:{GRPC_PORT}")
            assert grpc_conns and {c.protocol for c in grpc_conns} == {"h2"}, (pod.name, grpc_conns)
            ws_conns = find([*report.open, *report.recent], direction, f"{b.address}:{WS_PORT}")
            assert len(ws_conns) == 1 and ws_conns[0].protocol == "http1-upgraded", (pod.name, ws_conns)
            responses = await samples(pod, "response_total")
            grpc_status = {
                dict(labels).get("grpc_status"): count
                for labels, count in responses.items()
                if ("target_addr", f"{b.address}:{GRPC_PORT}") in labels
            }
            # OK (0) for the unary and both streaming calls, UNAVAILABLE (14) from the failing call's trailers.
            assert grpc_status.get("0") == 3 and grpc_status.get("14") == 1, (pod.name, grpc_status)
