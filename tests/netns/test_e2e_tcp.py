"""End to end in namespaces, both inbound modes: an app in pod a connects to pod b's address and port; a's
outbound proxy and b's inbound proxy carry it; the app on b receives every byte.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest
import trio

from ctl.lab.topology import Mode
from tests.netns.labs import (
    bracket,
    connect_from,
    connections,
    find,
    lab,
    listen_in,
    samples,
    tcp_labels,
)

pytestmark = [pytest.mark.netns, pytest.mark.usefixtures("require_netns")]

MiB = 1024 * 1024
BULK = 100 * MiB
BLOCK = os.urandom(MiB)
DIGEST_LEN = 32
PORT = 9000


async def _drain(stream: trio.SocketStream, hasher: hashlib._Hash, limit: int | None = None) -> int:
    got = 0
    while chunk := await stream.receive_some(1 << 18):
        hasher.update(chunk)
        got += len(chunk)
    return got


async def _send_blocks(stream: trio.SocketStream, total: int) -> None:
    for _ in range(total // MiB):
        await stream.send_all(BLOCK)


def _expected_digest(total: int) -> bytes:
    h = hashlib.sha256()
    for _ in range(total // MiB):
        h.update(BLOCK)
    return h.digest()


@pytest.mark.parametrize("mode", [Mode.REDIRECT, Mode.TPROXY], ids=lambda m: m.value)
async def test_100_mib_each_way_half_close_and_visibility(mode: Mode) -> None:
    async with lab(f"e{mode.value[0]}", mode) as the_lab:
        a, b = the_lab.pod("a"), the_lab.pod("b")
        target = f"{b.address}:{PORT}"
        listener = await listen_in(b, b.address, PORT)
        paused, resume = trio.Event(), trio.Event()
        seen: dict[str, object] = {}

        async def server() -> None:
            stream = await listener.accept()
            seen["peer"] = stream.socket.getpeername()[0]
            received = hashlib.sha256()
            async with stream:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_send_blocks, stream, BULK)
                    first = await stream.receive_some(MiB)
                    received.update(first)
                    paused.set()
                    await resume.wait()
                    seen["received"] = len(first) + await _drain(stream, received)
                # The client's FIN arrived (the loop above ended) and our direction is still open: the digest of
                # what we received goes back after it. That is the half-close, end to end.
                await stream.send_all(received.digest())
                await stream.send_eof()

        async def client() -> None:
            stream = await connect_from(a, b.address, PORT)
            reply = hashlib.sha256()
            tail = b""
            async with stream, trio.open_nursery() as nursery:

                async def send_then_fin() -> None:
                    await _send_blocks(stream, BULK)
                    await stream.send_eof()

                nursery.start_soon(send_then_fin)
                total = 0
                while chunk := await stream.receive_some(1 << 18):
                    total += len(chunk)
                    combined = tail + chunk
                    reply.update(combined[: max(0, len(combined) - DIGEST_LEN)])
                    tail = combined[-DIGEST_LEN:]
            seen["reply_total"] = total
            seen["reply_ok"] = reply.digest() == _expected_digest(BULK)
            seen["digest_ok"] = tail == _expected_digest(BULK)

        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server)
                nursery.start_soon(client)
                await paused.wait()
                # Mid-transfer: both proxies show the connection open, and the metrics count it.
                out_open = find((await connections(a)).open, "outbound", target)
                in_open = find((await connections(b)).open, "inbound", target)
                assert len(out_open) == 1 and len(in_open) == 1
                assert out_open[0].state in ("open", "client_half_closed", "upstream_half_closed")
                assert out_open[0].upstream == target
                for pod, direction, peer_id in ((a, "outbound", b.spiffe_id), (b, "inbound", a.spiffe_id)):
                    gauge = await samples(pod, "tcp_open_connections")
                    for peer in ("src", "dst"):
                        assert gauge[tcp_labels(direction, peer, target, b.address, PORT, peer_id=peer_id)] == 1
                resume.set()
        listener.socket.close()

        assert seen["received"] == BULK
        assert seen["reply_total"] == BULK + DIGEST_LEN
        assert seen["reply_ok"] and seen["digest_ok"]
        # redirect: the app sees the pod's own address (the proxy delivers locally); tproxy: the real client.
        assert seen["peer"] == (a.address if mode is Mode.TPROXY else b.address)

        with trio.fail_after(10):
            while find((await connections(a)).open, "outbound", target) or find(
                (await connections(b)).open, "inbound", target
            ):
                await trio.sleep(0.05)
        out_rec = find((await connections(a)).recent, "outbound", target)[0]
        in_rec = find((await connections(b)).recent, "inbound", target)[0]
        for rec in (out_rec, in_rec):
            assert rec.close_reason == "completed"
            assert rec.bytes_to_upstream == BULK
            assert rec.bytes_to_client == BULK + DIGEST_LEN
            assert rec.client.startswith(f"{a.address}:")
            assert rec.protocol == "opaque"
            assert rec.tls == "true"  # the lab's default: strict mTLS between the pods
        assert (out_rec.server_id, in_rec.client_id) == (b.spiffe_id, a.spiffe_id)
        for pod, direction, peer_id in ((a, "outbound", b.spiffe_id), (b, "inbound", a.spiffe_id)):
            read = await samples(pod, "tcp_read_bytes_total")
            written = await samples(pod, "tcp_write_bytes_total")
            closed = await samples(pod, "tcp_close_total")
            src = tcp_labels(direction, "src", target, b.address, PORT, peer_id=peer_id)
            dst = tcp_labels(direction, "dst", target, b.address, PORT, peer_id=peer_id)
            assert (read[src], written[src]) == (BULK, BULK + DIGEST_LEN)
            assert (read[dst], written[dst]) == (BULK + DIGEST_LEN, BULK)
            assert closed[tuple(sorted((*src, ("errno", ""))))] == 1


@pytest.mark.parametrize("mode", [Mode.REDIRECT, Mode.TPROXY], ids=lambda m: m.value)
async def test_ipv6_through_both_proxies(mode: Mode) -> None:
    async with lab(f"s{mode.value[0]}", mode) as the_lab:
        a, b = the_lab.pod("a"), the_lab.pod("b")
        assert a.ipv6 and b.ipv6
        listener = await listen_in(b, b.ipv6, PORT)
        target = f"{bracket(b.ipv6)}:{PORT}"
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:

                async def server() -> None:
                    stream = await listener.accept()
                    async with stream:
                        assert stream.socket.getpeername()[0] == (a.ipv6 if mode is Mode.TPROXY else b.ipv6)
                        assert await stream.receive_some(100) == b"hello over ipv6"
                        await stream.send_all(b"hi back")

                nursery.start_soon(server)
                stream = await connect_from(a, b.ipv6, PORT)
                async with stream:
                    await stream.send_all(b"hello over ipv6")
                    assert await stream.receive_some(100) == b"hi back"
        assert find([*(await connections(a)).open, *(await connections(a)).recent], "outbound", target)
        assert find([*(await connections(b)).open, *(await connections(b)).recent], "inbound", target)
        listener.socket.close()


def _saved_rules(netns: str) -> str:
    out = []
    for tool in ("iptables-nft-save", "ip6tables-nft-save", "iptables-legacy-save", "ip6tables-legacy-save"):
        run = subprocess.run(["ip", "netns", "exec", netns, tool], capture_output=True, text=True, check=False)
        out.append(run.stdout)
    return "\n".join(out)


def _ip_rules(netns: str) -> str:
    return "\n".join(
        subprocess.run(["ip", "-n", netns, *fam, "rule"], capture_output=True, text=True, check=True).stdout
        for fam in ([], ["-6"])
    )


@pytest.mark.parametrize("mode", [Mode.REDIRECT, Mode.TPROXY], ids=lambda m: m.value)
async def test_mesh_init_cleanup_leaves_no_triomesh_rule(mode: Mode) -> None:
    async with lab(f"c{mode.value[0]}", mode, pods=1) as the_lab:
        pod = the_lab.pod("a")
        assert "triomesh/" in _saved_rules(pod.netns)
        if mode is Mode.TPROXY:
            assert "lookup 133" in _ip_rules(pod.netns)
        mesh_init = os.path.join(sys.prefix, "bin", "mesh-init")
        done = subprocess.run(
            ["ip", "netns", "exec", pod.netns, mesh_init, "--cleanup"], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
        assert "triomesh" not in _saved_rules(pod.netns).lower()
        assert "TRIOMESH" not in _saved_rules(pod.netns)
        assert "lookup 133" not in _ip_rules(pod.netns)


HTTP_PORT = 8088  # the lab's own demo app listens on 8080
BANNER_PORT = 9025  # not one of the default opaque ports: the banner must get through detection itself
HTTP_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
BANNER = b"220 banner.test ESMTP ready\r\n"


@pytest.mark.parametrize("mode", [Mode.REDIRECT, Mode.TPROXY], ids=lambda m: m.value)
async def test_detection_in_the_lab_curl_is_http1_and_a_banner_is_not_stalled(mode: Mode) -> None:
    """Both sidecars detect HTTP/1.1 and proxy it (rewriting headers, counting requests); a server that speaks
    first is relayed opaque at once.

    Plaintext lab: between meshed pods the inner protocol is named in the TLS ALPN before the server can speak, so
    a banner on a detect port waits for the detect timeout there (the lab makes its own banner port opaque)."""
    async with lab(f"pd{mode.value[0]}", mode, mtls=False) as the_lab:
        a, b = the_lab.pod("a"), the_lab.pod("b")
        http = await listen_in(b, b.address, HTTP_PORT)
        smtp = await listen_in(b, b.address, BANNER_PORT)
        received: list[bytes] = []

        async def http_server() -> None:
            stream = await http.accept()
            async with stream:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = await stream.receive_some(4096)
                    assert chunk
                    request += chunk
                assert request.startswith(b"GET /detect HTTP/1.1\r\n")
                received.append(request)
                await stream.send_all(HTTP_RESPONSE)

        async def banner_server() -> None:
            stream = await smtp.accept()
            async with stream:
                await stream.send_all(BANNER)
                assert await stream.receive_some(100) == b"QUIT\r\n"
                await stream.send_all(b"221 bye\r\n")

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(http_server)
                curl = await trio.run_process(
                    [
                        "ip",
                        "netns",
                        "exec",
                        a.netns,
                        "curl",
                        "-sS",
                        "--http1.1",
                        "--max-time",
                        "10",
                        "-H",
                        "X-Forwarded-For: spoofed",
                        f"http://{b.address}:{HTTP_PORT}/detect",
                    ],
                    capture_stdout=True,
                    check=False,
                )
                assert curl.returncode == 0 and curl.stdout == b"hello"
        # Proxied, not relayed: the client's own X-Forwarded-For replaced by what the proxies saw, one request id.
        head = received[0].lower()
        assert f"\r\nx-forwarded-for: {a.address}\r\n".encode() in head
        assert head.count(b"\r\nx-request-id: ") == 1 and b"spoofed" not in head
        with trio.fail_after(5):  # the detect timeout is 10 s: the banner must not wait for it
            async with trio.open_nursery() as nursery:
                nursery.start_soon(banner_server)
                stream = await connect_from(a, b.address, BANNER_PORT)
                async with stream:
                    assert await stream.receive_some(100) == BANNER
                    await stream.send_all(b"QUIT\r\n")
                    assert await stream.receive_some(100) == b"221 bye\r\n"
        http.socket.close()
        smtp.socket.close()

        expected = {HTTP_PORT: ("http1", "http/1"), BANNER_PORT: ("opaque", "server_first")}
        for pod, direction in ((a, "outbound"), (b, "inbound")):
            report = await connections(pod)
            for port, (protocol, result) in expected.items():
                found = find([*report.open, *report.recent], direction, f"{b.address}:{port}")
                assert [(c.protocol, c.detect_result) for c in found] == [(protocol, result)], (pod, port)
                assert found[0].detect_seconds is not None and found[0].detect_seconds < 5
            results = await samples(pod, "tcp_detect_http_results_total")
            assert results[(("direction", direction), ("result", "http/1"))] == 1
            assert results[(("direction", direction), ("result", "server_first"))] == 1
            responses = await samples(pod, "response_total")
            ours = {k: v for k, v in responses.items() if ("target_addr", f"{b.address}:{HTTP_PORT}") in k}
            assert list(ours.values()) == [1], ours
            (labels,) = ours
            assert {("direction", direction), ("status_code", "200"), ("classification", "success")} <= set(labels)
