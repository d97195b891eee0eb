"""Service web's other protocols in the lab, pod a the client (services of a policy of its own, beside web):

- opaque TCP (the demo app's line protocol, server speaks first) is balanced per connection: 30 connections to a
  virtual address on port 8080 are greeted by all three endpoints, none fails;
- h2 (prior knowledge, h2load) is balanced per request: 30 requests on one connection are answered by all three
  endpoints (h2 servers of this test in pods b, c, d);
- a service without endpoints answers HTTP 503 with ``x-triomesh-error`` (fail fast) and resets or closes TCP
  connections without a byte.
"""

from __future__ import annotations

from collections import Counter
from functools import partial

import pytest
import trio

from ctl.lab.lab import Lab, Pod
from ctl.lab.service import SERVICE_NET
from ctl.lab.talk import talk
from ctl.lab.topology import APP_PORT, Mode
from dataplane.http2.conn import H2Stream
from tests.netns.labs import connections, lab, listen_in, run_in, serve_h2
from tests.netns.service_load import request_once
from tests.netns.service_policy import apply_policy, services
from tests.tools import need

pytestmark = [pytest.mark.netns, pytest.mark.usefixtures("require_netns")]

H2_PORT = 8082
CONNECTIONS = REQUESTS = 30
LINES_VIP, H2_VIP, EMPTY_VIP = (str(SERVICE_NET[n]) for n in (11, 12, 13))
ENDPOINT_PODS = ("b", "c", "d")


def _service(lab: Lab, name: str, vip: str, port: int) -> dict[str, object]:
    endpoints = [{"address": lab.pod(p).address, "identity": lab.pod(p).spiffe_id} for p in ENDPOINT_PODS]
    return {"name": name, "addresses": [vip], "ports": [{"port": port}], "endpoints": endpoints}


async def _with_services(the_lab: Lab) -> None:
    a = the_lab.pod("a")
    policy = a.policy()
    empty: dict[str, object] = {
        "name": "empty",
        "addresses": [EMPTY_VIP],
        "ports": [{"port": 80}, {"port": APP_PORT}],
        "queue": {"failfast": "100ms"},
    }
    services(policy).extend(
        [_service(the_lab, "lines", LINES_VIP, APP_PORT), _service(the_lab, "h2", H2_VIP, H2_PORT), empty]
    )
    await apply_policy(a, policy)


async def _answer(pod: Pod, answered: Counter[str], stream: H2Stream) -> None:
    """The h2 application in an endpoint pod (served by this process): counts and names its pod."""
    answered[pod.name] += 1
    body = f"{pod.name} answers h2\n".encode()
    await stream.send_headers([(b":status", b"200"), (b"content-length", b"%d" % len(body))])
    await stream.send_data(body, end_stream=True)


async def test_tcp_per_connection_h2_per_request_and_no_endpoint() -> None:
    async with lab("pr", Mode.REDIRECT, pods=4, prefix="tmsvc", service=True) as the_lab:
        a = the_lab.pod("a")
        with trio.fail_after(60):
            await _with_services(the_lab)
            greeted: Counter[str] = Counter()
            for n in range(CONNECTIONS):
                greeting, echo = await talk(a.netns, LINES_VIP, APP_PORT, [f"line {n}"])
                greeted[greeting.split(" ")[2]] += 1
                assert echo.endswith(f"echoes: line {n}"), echo
            answered: Counter[str] = Counter()
            async with trio.open_nursery() as nursery:
                for name in ENDPOINT_PODS:
                    pod = the_lab.pod(name)
                    handler = partial(_answer, pod, answered)
                    nursery.start_soon(serve_h2, await listen_in(pod, pod.address, H2_PORT), handler)
                # One connection, up to 4 streams at once (h2load: -c 1 -m 4).
                h2load = [need("h2load"), "-n", str(REQUESTS), "-c", "1", "-m", "4", f"http://{H2_VIP}:{H2_PORT}/"]
                out = await run_in(a, *h2load)
                nursery.cancel_scope.cancel()
            report = await connections(a)
            h2_rows = [row for row in [*report.open, *report.recent] if row.original_dst == f"{H2_VIP}:{H2_PORT}"]
            empty_http = await request_once(a, EMPTY_VIP, 80, "/none", timeout=2.0)
            with pytest.raises((OSError, EOFError)):
                await talk(a.netns, EMPTY_VIP, APP_PORT, [])
    print(f"TCP connections greeted by {dict(greeted)}; h2 requests answered by {dict(answered)} on {len(h2_rows)}")
    assert set(greeted) == set(ENDPOINT_PODS) and greeted.total() == CONNECTIONS, greeted
    assert f"requests: {REQUESTS} total, {REQUESTS} started, {REQUESTS} done, {REQUESTS} succeeded" in out, out
    assert set(answered) == set(ENDPOINT_PODS) and answered.total() == REQUESTS, answered
    assert [(row.protocol, row.requests) for row in h2_rows] == [("h2", REQUESTS)], h2_rows
    assert empty_http.status == 503 and empty_http.error, empty_http
