"""A service whose endpoint has an identity: requests cross mesh mTLS to the endpoint's proxy, and the client
side records them as such (tls="true", the endpoint's verified identity) in /connections and the metrics."""

from __future__ import annotations

from pathlib import Path

import trio

from dataplane.net.addr import SockAddr
from dataplane.settings import Forward
from tests.dataplane.l7.harness import free_port
from tests.dataplane.mesh.test_two_hops import STRICT, App, application, proxy, published_identities, records
from tests.dataplane.services.endpoints import VIP, Client
from tests.dataplane.tls.mesh import real_pki
from tests.identity.pki import BACKEND, FRONTEND


async def test_requests_to_an_endpoint_with_an_identity_go_over_mtls_and_say_so(tmp_path: Path) -> None:
    client_id, server_id = published_identities(tmp_path, real_pki())
    entry, middle = SockAddr("127.0.0.1", free_port()), SockAddr("127.0.0.1", free_port())
    policy = (
        "outbound:\n  services:\n    - name: web\n"
        f"      addresses: ['{VIP.ip}']\n      ports: [{{port: {VIP.port}}}]\n"
        f"      endpoints: [{{address: '{middle}', identity: '{BACKEND}'}}]\n"
    )
    seen = App()
    with trio.fail_after(20):
        async with (
            application(seen) as app,
            proxy(tmp_path, "server", server_id, STRICT, Forward(middle, app, "inbound")) as (hop2, _),
            proxy(tmp_path, "client", client_id, policy, Forward(entry, VIP)) as (hop1, _),
        ):
            client = await Client.open(entry)
            status, _, body = await client.request()
            await client.aclose()
            assert (status, body) == (200, b"ok")
            with trio.fail_after(2):  # the far side's record closes a moment after the answer went out
                while ("true", FRONTEND, "completed") not in records(hop2):
                    await trio.sleep(0.01)
            outbound = [rec for rec in (*hop1.table.live.values(), *hop1.table.recent) if rec.service == "web:80"]
            assert [(rec.tls, rec.peer_id, rec.upstream) for rec in outbound] == [("true", BACKEND, middle)]
            keys = [key for key, count in hop1.http.stats.requests.items() if count]
            assert [(key.tls, key.peer_id) for key in keys] == [("true", BACKEND)]
