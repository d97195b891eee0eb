"""A pod whose own proxy is bypassed speaks plaintext to a strict peer and is refused before anything reaches the
peer's application: curl run as UID 1337 and a raw socket carrying the proxy's SO_MARK (both exempted by
mesh-init, so they leave pod a without mTLS), against a recording server and against the demo app, in both
inbound modes. The same requests from an ordinary (intercepted) client reach the recorder over mTLS."""

from __future__ import annotations

import shutil
import socket

import pytest
import trio

from ctl.lab.lab import PROXY_UID, Pod
from ctl.lab.topology import APP_PORT, Mode
from ctl.netns import netns_socket
from iptables.config import DEFAULT_PROXY_MARK
from tests.netns.labs import connect_from, connections, find, lab, listen_in
from tests.tools import need

pytestmark = [pytest.mark.netns, pytest.mark.usefixtures("require_netns")]

RECORDER_PORT = 8094
REFUSAL_TIMEOUT = 5  # seconds for a refused connection to be closed; it takes milliseconds
REQUEST = b"GET /plaintext HTTP/1.1\r\nHost: b\r\nx-tlm-plain: yes\r\n\r\n"
OPAQUE = b"\x00\x01tlm opaque bytes\n"  # not HTTP: relayed as it is, so the recorder gets exactly these bytes


class Recorder:
    """The application in pod b: counts connections and keeps every byte it receives."""

    def __init__(self) -> None:
        self.accepted = 0
        self.received = bytearray()

    async def serve(self, listener: trio.SocketListener) -> None:
        async def one(stream: trio.SocketStream) -> None:
            self.accepted += 1
            async with stream:
                try:
                    while data := await stream.receive_some(65536):
                        self.received += data
                        await stream.send_all(b"recorded\n")
                except trio.BrokenResourceError:
                    pass

        await trio.serve_listeners(one, [listener])


async def _bypassing_socket(a: Pod, host: str, port: int) -> trio.SocketStream:
    """A connection from pod a that mesh-init lets past a's proxy: it carries the proxy's SO_MARK."""
    sock = netns_socket(a.netns, socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, DEFAULT_PROXY_MARK)
    tsock = trio.socket.from_stdlib_socket(sock)
    await tsock.connect((host, port))
    return trio.SocketStream(tsock)


async def _answer(stream: trio.SocketStream, send: bytes) -> bytes:
    """What the peer sends back to ``send`` (followed by our EOF) until it closes (a reset counts as closed)."""
    answer = b""
    async with stream:
        with trio.fail_after(REFUSAL_TIMEOUT):
            try:
                if send:
                    await stream.send_all(send)
                    await stream.send_eof()
                while chunk := await stream.receive_some(65536):
                    answer += chunk
            except trio.BrokenResourceError:
                pass
    return answer


async def _curl_as_proxy_uid(a: Pod, url: str) -> tuple[int, str]:
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "setpriv not installed (Debian package util-linux)"
    as_proxy = [setpriv, f"--reuid={PROXY_UID}", f"--regid={PROXY_UID}", "--clear-groups"]
    argv = ["ip", "netns", "exec", a.netns, *as_proxy, need("curl"), "-sS", "--noproxy", "*", "--max-time", "5", url]
    done = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
    return done.returncode, (done.stdout + done.stderr).decode(errors="replace")


@pytest.mark.parametrize("mode", [Mode.REDIRECT, Mode.TPROXY], ids=lambda m: m.value)
async def test_plaintext_around_the_proxy_is_refused_by_a_strict_peer(mode: Mode) -> None:
    async with lab(f"p{mode.value[0]}", mode, prefix="tlm") as the_lab:
        a, b = the_lab.pod("a"), the_lab.pod("b")
        recorder = Recorder()
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(recorder.serve, await listen_in(b, b.address, RECORDER_PORT))
                code, out = await _curl_as_proxy_uid(a, f"http://{b.address}:{RECORDER_PORT}/plaintext")
                assert code in (52, 56), (code, out)  # empty reply / connection reset: no HTTP answer at all
                answer = await _answer(await _bypassing_socket(a, b.address, RECORDER_PORT), REQUEST)
                assert answer == b""
                # The demo app speaks first and echoes lines: had the connection reached it, its greeting and the
                # echo would be here. (A client that sends nothing is held until the detect timeout instead.)
                answer = await _answer(await _bypassing_socket(a, b.address, APP_PORT), b"ping\n")
                assert answer == b""
                await trio.sleep(0.5)  # let a late upstream connect show, if there were one
                assert (recorder.accepted, bytes(recorder.received)) == (0, b"")

                report = await connections(b)
                refused = find(report.recent, "inbound", f"{b.address}:{RECORDER_PORT}")
                refused += find(report.recent, "inbound", f"{b.address}:{APP_PORT}")
                assert len(refused) == 3, refused
                assert {c.close_reason for c in refused} == {"plaintext_refused"}, refused
                assert all(c.bytes_to_upstream == 0 and c.bytes_to_client == 0 for c in refused), refused
                assert {(c.tls, c.client_id) for c in refused} == {("no_identity", None)}, refused

                # The same request from an ordinary client of pod a goes through a's proxy, over mTLS, and arrives.
                answer = await _answer(await connect_from(a, b.address, RECORDER_PORT), OPAQUE)
                assert answer == b"recorded\n"
                assert recorder.accepted == 1 and bytes(recorder.received) == OPAQUE
                report = await connections(b)
                meshed = [c for c in find(report.recent, "inbound", f"{b.address}:{RECORDER_PORT}") if c.tls == "true"]
                assert [c.client_id for c in meshed] == [a.spiffe_id], report.recent
                nursery.cancel_scope.cancel()
