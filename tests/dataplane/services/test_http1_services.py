"""HTTP/1.1 to a service's virtual address through the whole proxy: per-request balancing, retries within the
route's rules and the budget, route and per-try timeouts, fail-fast and load shedding, reloads."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import trio

from tests.dataplane.services.endpoints import Client, Mode, endpoints, fetch, refusing, service_policy, service_proxy


def _retries(running: object, event: str) -> int:
    from dataplane.app import Proxy

    proxy = running.proxy  # type: ignore[attr-defined]
    assert isinstance(proxy, Proxy)
    return proxy.runtime.services.counters.retry_count(("web", "80", "default"), event)  # type: ignore[arg-type]


async def test_requests_on_one_connection_spread_over_every_endpoint(tmp_path: Path) -> None:
    async with endpoints("a", "b", "c") as apps, service_proxy(tmp_path, service_policy(apps)) as running:
        client = await Client.open(running.listen)
        seen: Counter[str] = Counter()
        for _ in range(90):
            status, _, body = await client.request()
            assert status == 200
            seen[body.decode()] += 1
        await client.aclose()
        assert set(seen) == {"a", "b", "c"}, seen
        conns = [rec for rec in running.proxy.table.recent if rec.service == "web:80"]
        conns += [rec for rec in running.proxy.table.live.values() if rec.service == "web:80"]
        assert conns and conns[0].upstream in {app.address for app in apps}


async def test_weights_give_heavier_endpoints_more_requests(tmp_path: Path) -> None:
    async with endpoints("a", "b", "c") as apps:
        policy = service_policy(apps, weights=[1, 2, 6])
        async with service_proxy(tmp_path, policy) as running:
            client = await Client.open(running.listen)
            seen: Counter[str] = Counter()
            for _ in range(450):
                _, _, body = await client.request()
                seen[body.decode()] += 1
            await client.aclose()
    assert seen["a"] < seen["b"] < seen["c"], seen
    assert seen["c"] > 450 * 0.45, seen


async def test_an_endpoint_that_refuses_connections_is_never_seen_by_clients(tmp_path: Path) -> None:
    async with endpoints("a", "b", "c") as apps:
        refusing(apps[0])
        async with service_proxy(tmp_path, service_policy(apps)) as running:
            results: Counter[tuple[int, str]] = Counter()
            for _ in range(40):
                status, _, body = await fetch(running.listen)
                results[(status, body.decode())] += 1
            assert set(results) <= {(200, "b"), (200, "c")}, results
            assert _retries(running, "requests") >= 1
            rows = list(running.proxy.runtime.services.rows())
            assert rows[0].ejected == 1, rows  # 7 connect failures in a row: ejected


async def test_a_listed_status_is_retried_on_another_endpoint(tmp_path: Path) -> None:
    extra = "      retry: {statuses: [503], conditions: [connect-failure]}\n"
    async with endpoints("a", "b") as apps:
        apps[0].mode = "503"
        async with service_proxy(tmp_path, service_policy(apps, extra=extra)) as running:
            for _ in range(20):
                status, _, body = await fetch(running.listen)
                assert (status, body) == (200, b"b")
            assert _retries(running, "requests") >= 1
            assert _retries(running, "successes") == _retries(running, "requests")
            engine = running.proxy.http.h1_engine
            assert engine is not None and engine.handed_over == 0  # statuses are retried in the engine too


async def test_post_is_not_retried_on_a_status(tmp_path: Path) -> None:
    extra = "      retry: {statuses: [503]}\n"
    async with endpoints("a") as apps:
        apps[0].mode = "503"
        async with service_proxy(tmp_path, service_policy(apps, extra=extra)) as running:
            status, _, _ = await fetch(running.listen, method="POST")
            assert status == 503
            assert apps[0].requests == 1
            assert _retries(running, "requests") == 0


@pytest.mark.parametrize("mode", ["reset", "close"])
async def test_a_reset_or_close_before_the_response_is_retried_for_get(tmp_path: Path, mode: Mode) -> None:
    extra = "      retry: {conditions: [reset]}\n"
    async with endpoints("a", "b") as apps:
        apps[0].mode = mode
        async with service_proxy(tmp_path, service_policy(apps, extra=extra)) as running:
            for _ in range(10):
                status, _, body = await fetch(running.listen)
                assert (status, body) == (200, b"b")


async def test_max_attempts_bounds_the_tries(tmp_path: Path) -> None:
    extra = "      retry: {statuses: [503], max_attempts: 2}\n"
    async with endpoints("a", "b", "c") as apps:
        for app in apps:
            app.mode = "503"
        async with service_proxy(tmp_path, service_policy(apps, extra=extra)) as running:
            status, _, _ = await fetch(running.listen)
            assert status == 503
            assert sum(app.requests for app in apps) == 2
            assert _retries(running, "limit_exceeded") == 1


async def test_the_retry_budget_bounds_retries_when_everything_fails(tmp_path: Path) -> None:
    extra = (
        "      retry: {statuses: [503], max_attempts: 5}\n"
        "      retry_budget: {ratio: 0.2, min_per_second: 1, ttl: 10s}\n"
    )
    async with endpoints("a", "b") as apps:
        for app in apps:
            app.mode = "503"
        async with service_proxy(tmp_path, service_policy(apps, extra=extra)) as running:
            client = await Client.open(running.listen)
            for _ in range(100):
                status, _, _ = await client.request()
                assert status == 503
            await client.aclose()
            retries = _retries(running, "requests")
            # 20% of 100 requests plus the floor of 1/s over the 10 s window: at most 30.
            assert retries <= 0.2 * 100 + 10, retries
            assert _retries(running, "overflow") > 0
            assert _retries(running, "successes") == 0  # every retry ended on a 503 too
            assert sum(app.requests for app in apps) == 100 + retries


async def test_the_route_timeout_answers_504(tmp_path: Path) -> None:
    extra = "      routes: [{name: slow, paths: ['/slow'], timeout: 300ms}]\n"
    async with endpoints("a") as apps:
        apps[0].mode = "hang"
        async with service_proxy(tmp_path, service_policy(apps, extra=extra)) as running:
            started = trio.current_time()
            status, headers, _ = await fetch(running.listen, "/slow")
            elapsed = trio.current_time() - started
            assert status == 504, headers
            assert "route" in headers["x-triomesh-error"]
            assert 0.3 <= elapsed < 0.5, elapsed  # the deadline, plus scheduling on a busy machine


async def test_a_per_try_timeout_moves_on_to_another_endpoint(tmp_path: Path) -> None:
    extra = "      retry: {conditions: [per-try-timeout], per_try_timeout: 200ms}\n"
    async with endpoints("a", "b") as apps:
        apps[0].mode = "hang"
        async with service_proxy(tmp_path, service_policy(apps, extra=extra)) as running:
            for _ in range(6):
                status, _, body = await fetch(running.listen)
                assert (status, body) == (200, b"b")


async def test_no_endpoints_fails_fast_with_503(tmp_path: Path) -> None:
    policy = service_policy([], extra="      queue: {failfast: 200ms}\n").replace("      endpoints:\n", "")
    async with service_proxy(tmp_path, policy) as running:
        started = trio.current_time()
        status, headers, _ = await fetch(running.listen)
        assert status == 503 and "no endpoints" in headers["x-triomesh-error"], headers
        assert 0.2 <= trio.current_time() - started < 0.4
        started = trio.current_time()
        status, _, _ = await fetch(running.listen)
        assert status == 503
        assert trio.current_time() - started < 0.15  # in fail-fast now: at once (no 200 ms wait)


async def test_a_full_queue_sheds_with_503(tmp_path: Path) -> None:
    extra = "      queue: {capacity: 2}\n"
    async with endpoints("a") as apps:
        apps[0].delay = 0.5
        async with service_proxy(tmp_path, service_policy(apps, extra=extra)) as running:
            statuses: list[int] = []

            async def one() -> None:
                status, _, _ = await fetch(running.listen)
                statuses.append(status)

            async with trio.open_nursery() as nursery:
                for _ in range(5):
                    nursery.start_soon(one)
            assert sorted(statuses) == [200, 200, 503, 503, 503], statuses


async def test_a_reload_removes_an_endpoint_for_new_requests(tmp_path: Path) -> None:
    async with endpoints("a", "b") as apps, service_proxy(tmp_path, service_policy(apps)) as running:
        client = await Client.open(running.listen)
        for _ in range(10):
            await client.request()
        assert apps[0].requests and apps[1].requests
        (tmp_path / "policy.yaml").write_text(service_policy(apps[1:]))
        with trio.fail_after(5):
            while running.proxy.store.current.generation < 2:
                await trio.sleep(0.05)
        before = apps[0].requests
        for _ in range(20):
            status, _, body = await client.request()
            assert (status, body) == (200, b"b")
        assert apps[0].requests == before
        await client.aclose()


async def test_a_slow_endpoint_gets_little_traffic(tmp_path: Path) -> None:
    async with endpoints("a", "b", "c") as apps:
        apps[0].delay = 0.2
        async with service_proxy(tmp_path, service_policy(apps)) as running:
            client = await Client.open(running.listen)
            seen: Counter[str] = Counter()
            for _ in range(150):
                _, _, body = await client.request()
                seen[body.decode()] += 1
            await client.aclose()
    # Even shares would be 50 each; peak-EWMA keeps the slow one to its first tries and rare probes.
    assert seen["a"] < 10, seen


async def test_a_malformed_body_is_refused_before_any_endpoint_sees_it(tmp_path: Path) -> None:
    async with endpoints("a", "b") as apps, service_proxy(tmp_path, service_policy(apps)) as running:
        stream = await trio.open_tcp_stream(*running.listen)
        async with stream:
            await stream.send_all(b"POST / HTTP/1.1\r\nhost: web\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n")
            answer = b""
            while chunk := await stream.receive_some():
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 400"), answer
        assert apps[0].connections == apps[1].connections == 0
        # The body is read (to be kept for retries) before an endpoint is chosen: nothing is in flight after.
        with trio.fail_after(2):
            while [row.queue_length for row in running.proxy.runtime.services.rows()] != [0]:
                await trio.sleep(0.01)


async def test_a_body_too_big_to_keep_streams_and_is_not_retried(tmp_path: Path) -> None:
    extra = "      retry: {conditions: [connect-failure, reset], max_body: 16}\n"
    async with endpoints("a") as apps, service_proxy(tmp_path, service_policy(apps, extra=extra)) as running:
        apps[0].mode = "reset"
        client = await Client.open(running.listen)
        status, _, _ = await client.request("PUT", "/", b"x" * 1000)
        assert status == 502  # reset before the response, on a fresh connection: not retried (body not kept)
        assert apps[0].requests == 1
        await client.aclose()
        apps[0].mode = "ok"
        client = await Client.open(running.listen)
        assert (await client.request("PUT", "/", b"x" * 1000))[::2] == (200, b"a")
        await client.aclose()


async def test_a_client_that_leaves_mid_request_leaves_the_queue(tmp_path: Path) -> None:
    async with endpoints("a") as apps, service_proxy(tmp_path, service_policy(apps)) as running:
        apps[0].mode = "hang"
        streams = [await trio.open_tcp_stream(*running.listen) for _ in range(3)]
        for stream in streams:
            await stream.send_all(b"GET / HTTP/1.1\r\nhost: web\r\n\r\n")
        with trio.fail_after(2):
            while apps[0].requests < 3:
                await trio.sleep(0.01)
        state = running.proxy.runtime.services.get("web", 80)
        assert state is not None and state.in_flight == 3
        for stream in streams:
            await stream.aclose()
        with trio.fail_after(2):
            while state.in_flight:
                await trio.sleep(0.01)
        assert state.balancer.endpoints[0].pending == 0


async def test_metrics_show_the_balancer_and_forget_a_removed_service(tmp_path: Path) -> None:
    async with endpoints("a", "b") as apps, service_proxy(tmp_path, service_policy(apps)) as running:
        assert (await fetch(running.listen))[0] == 200
        metrics = running.proxy.metrics.render().decode()
        assert 'outbound_http_balancer_endpoints{endpoint_state="ready",parent_name="web",parent_port="80"} 2.0' in (
            metrics
        ), metrics
        (tmp_path / "policy.yaml").write_text("outbound: {}\n")
        with trio.fail_after(5):
            while running.proxy.store.current.generation < 2:
                await trio.sleep(0.05)
        assert "outbound_http_balancer_endpoints{" not in running.proxy.metrics.render().decode()


async def test_the_engine_serves_service_requests_timed_routes_too(tmp_path: Path) -> None:
    extra = "      routes: [{name: timed, paths: ['/timed'], timeout: 300ms}]\n"
    async with endpoints("a", "b") as apps, service_proxy(tmp_path, service_policy(apps, extra=extra)) as running:
        engine = running.proxy.http.h1_engine
        assert engine is not None
        client = await Client.open(running.listen)
        for _ in range(10):
            assert (await client.request())[0] == 200
        assert (await client.request("GET", "/timed"))[0] == 200
        await client.aclose()
        for app in apps:
            app.mode = "hang"
        started = trio.current_time()
        status, headers, _ = await fetch(running.listen, "/timed")
        elapsed = trio.current_time() - started
        assert status == 504 and "route timed" in headers["x-triomesh-error"], headers
        assert 0.3 <= elapsed < 0.5, elapsed
        assert engine.handed_over == 0  # balanced, counted, retried and timed in the epoll engine
        state = running.proxy.runtime.services.get("web", 80)
        assert state is not None
        assert sum(ep.requests for ep in state.balancer.endpoints) == 12
        with trio.fail_after(2):
            while state.in_flight:
                await trio.sleep(0.01)


async def test_waiting_for_an_endpoint_ends_at_the_route_timeout(tmp_path: Path) -> None:
    extra = "      timeout: 200ms\n      queue: {failfast: 5s}\n"
    policy = service_policy([], extra=extra).replace("      endpoints:\n", "")
    async with service_proxy(tmp_path, policy) as running:
        started = trio.current_time()
        status, headers, _ = await fetch(running.listen)
        assert status == 503 and "deadline" in headers["x-triomesh-error"], headers
        assert 0.2 <= trio.current_time() - started < 0.4
