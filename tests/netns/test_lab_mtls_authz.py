"""An authorization change in one pod's policy file, as an operator makes it: pod b allows only pod a's identity.
From the reload on, pod c's HTTP requests get 403 and its TCP connections are closed, without reaching b's
application, while pod a keeps working; c's connection that was open before the change is closed with reason
policy_revoked, a's stays open."""

from __future__ import annotations

import pytest
import trio

from ctl.lab.lab import Pod
from ctl.lab.lines import LineReader
from ctl.lab.pod_policy import write_policy
from ctl.lab.topology import APP_PORT, HTTP_PORT, Mode
from tests.netns.labs import connect_from, connections, find, lab, run_in, samples
from tests.tools import need

pytestmark = [pytest.mark.netns, pytest.mark.usefixtures("require_netns")]

RELOAD_TIMEOUT = 5  # seconds for b's proxy to apply the new policy; it polls the file twice a second
CLOSE_TIMEOUT = 5


async def _http_status(src: Pod, dst: Pod) -> tuple[str, str]:
    """(status code, the x-triomesh-error field or "") of GET http://dst:8081/authz from ``src``."""
    curl = [need("curl"), "-sS", "--noproxy", "*", "-o", "/dev/null", "-D", "-"]
    head = await run_in(src, *curl, f"http://{dst.address}:{HTTP_PORT}/authz")
    status = head.split(" ", 2)[1]
    error = [
        line.partition(":")[2].strip() for line in head.splitlines() if line.lower().startswith("x-triomesh-error")
    ]
    return status, error[0] if error else ""


async def _greeted(src: Pod, dst: Pod) -> tuple[trio.SocketStream, LineReader]:
    stream = await connect_from(src, dst.address, APP_PORT)
    lines = LineReader(stream)
    with trio.fail_after(CLOSE_TIMEOUT):
        greeting = await lines.readline()
    assert greeting is not None and greeting.startswith(b"hello from b"), greeting
    return stream, lines


async def _closed(stream: trio.SocketStream, lines: LineReader) -> bytes:
    """Reads until the peer closes (EOF or reset), bounded; what arrived before."""
    received = b""
    with trio.fail_after(CLOSE_TIMEOUT):
        try:
            while (line := await lines.readline()) is not None:
                received += line + b"\n"
        except trio.BrokenResourceError:
            pass
    await stream.aclose()
    return received


async def _generation(pod: Pod) -> int:
    return (await trio.to_thread.run_sync(pod.admin().status)).policy_generation


def _count(found: dict[tuple[tuple[str, str], ...], float], client_id: str) -> float:
    return sum(value for labels, value in found.items() if ("client_id", client_id) in labels)


async def test_allowing_only_pod_a_denies_pod_c_within_one_reload_and_revokes_its_open_connection() -> None:
    async with lab("az", Mode.REDIRECT, pods=3, prefix="tlm") as the_lab:
        a, b, c = the_lab.pod("a"), the_lab.pod("b"), the_lab.pod("c")
        assert a.spiffe_id is not None and c.spiffe_id is not None
        with trio.fail_after(60):
            for client in (a, c):
                assert await _http_status(client, b) == ("200", "")
            kept_a, lines_a = await _greeted(a, b)
            kept_c, lines_c = await _greeted(c, b)

            policy = b.policy()
            inbound = policy["inbound"]
            assert isinstance(inbound, dict)
            inbound["authorization"] = [{"identities": [a.spiffe_id]}]
            before = await _generation(b)
            write_policy(b.policy_path, policy)
            with trio.fail_after(RELOAD_TIMEOUT):
                while await _generation(b) == before:
                    await trio.sleep(0.05)
            assert await _generation(b) == before + 1

            # From this reload on: c is refused, a is served.
            status, error = await _http_status(c, b)
            assert status == "403" and error, (status, error)
            assert await _closed(*await _open_lines(c, b)) == b""
            assert await _http_status(a, b) == ("200", "")
            fresh_a, _ = await _greeted(a, b)
            await fresh_a.aclose()

            # c's connection from before the change is closed; a's carries on.
            assert await _closed(kept_c, lines_c) == b""
            await kept_a.send_all(b"still allowed\n")
            assert await lines_a.readline() == b"b echoes: still allowed"
            await kept_a.aclose()

        report = await connections(b)
        inbound = find([*report.open, *report.recent], "inbound", f"{b.address}:{APP_PORT}")
        assert all(conn.tls == "true" for conn in inbound), inbound
        revoked = [conn for conn in inbound if conn.close_reason == "policy_revoked"]
        assert [conn.client_id for conn in revoked] == [c.spiffe_id], inbound
        denied = [conn for conn in inbound if conn.close_reason == "authz_denied"]
        assert [(conn.client_id, conn.bytes_to_upstream) for conn in denied] == [(c.spiffe_id, 0)], inbound
        assert {conn.client_id for conn in inbound if conn.close_reason not in ("policy_revoked", "authz_denied")} == {
            a.spiffe_id
        }, inbound
        # One denied request and (at least: a revocation may count too) one denied connection, all of them c's.
        http_denied = await samples(b, "inbound_http_authz_deny_total")
        assert _count(http_denied, c.spiffe_id) == 1 and _count(http_denied, a.spiffe_id) == 0, http_denied
        tcp_denied = await samples(b, "inbound_tcp_authz_deny_total")
        assert _count(tcp_denied, c.spiffe_id) >= 1 and _count(tcp_denied, a.spiffe_id) == 0, tcp_denied


async def _open_lines(src: Pod, dst: Pod) -> tuple[trio.SocketStream, LineReader]:
    stream = await connect_from(src, dst.address, APP_PORT)
    return stream, LineReader(stream)
