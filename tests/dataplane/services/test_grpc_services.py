"""Real gRPC (grpcio client and servers) to a service's virtual address: calls spread over the endpoints, the
check suite of the direct path passes, and a client deadline ends the call at the deadline (DEADLINE_EXCEEDED)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import grpc
import trio

from dataplane.net.addr import SockAddr
from tests.apps import grpc_app
from tests.dataplane.services.endpoints import Endpoint, service_policy, service_proxy


async def test_grpc_calls_to_a_service(tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        ports = [stack.enter_context(grpc_app.running_server()) for _ in range(2)]
        apps = [Endpoint(str(port), address=SockAddr("127.0.0.1", port)) for port in ports]
        async with service_proxy(tmp_path, service_policy(apps)) as running:
            problems = await trio.to_thread.run_sync(grpc_app.check, str(running.listen))
            assert problems == []
            client = grpc_app.Client(str(running.listen))
            try:
                started = trio.current_time()
                error = None
                try:
                    await trio.to_thread.run_sync(lambda: client.slow(2000, timeout=0.2))
                except grpc.RpcError as exc:
                    error = exc
                elapsed = trio.current_time() - started
                for _ in range(20):
                    await trio.to_thread.run_sync(lambda: client.unary(b"x"))
            finally:
                client.close()
            assert error is not None and error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            assert elapsed < 0.5, elapsed
            recs = [*running.proxy.table.recent, *running.proxy.table.live.values()]
            upstreams = {rec.upstream for rec in recs if rec.service == "web:80"}
            assert upstreams and upstreams <= {app.address for app in apps}
            state = running.proxy.runtime.services.get("web", 80)
            assert state is not None
            endpoints = {ep.address: ep.requests for ep in state.balancer.endpoints}
            assert len(endpoints) == 2 and all(count > 0 for count in endpoints.values()), endpoints
