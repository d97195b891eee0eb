"""The clients that knock on the proxy: ``openssl s_client``, ``curl``, a Python TLS client that sends its
request the moment its handshake ends, and a raw socket for bytes no TLS library sends. Each is bounded."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Final

import trio

from tests.dataplane.mtls.identities import Svid
from tests.tools import need

CLIENT_TIMEOUT: Final = 20.0  # seconds; every refusal here is immediate, this only bounds a hang
MESH_HTTP1: Final = "triomesh.http1/1"
MESH_H2: Final = "triomesh.h2/1"
MESH_TCP: Final = "triomesh.tcp/1"
REQUEST: Final = b"GET /secret HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n"


async def s_client(port: int, *args: str, stdin: bytes = b"") -> str:
    """``openssl s_client`` to the proxy; everything it printed. ``-ign_eof`` keeps it reading after ``stdin``
    ends, until the proxy closes, so a TLS 1.3 post-handshake alert is printed too."""
    command = [need("openssl"), "s_client", "-connect", f"127.0.0.1:{port}", "-ign_eof", *args]
    with trio.fail_after(CLIENT_TIMEOUT):
        done = await trio.run_process(command, stdin=stdin, capture_stdout=True, capture_stderr=True, check=False)
    return (done.stdout + done.stderr).decode(errors="replace")


@dataclass(frozen=True)
class CurlResult:
    exit_code: int
    head: str
    body: bytes
    stderr: str

    @property
    def status(self) -> int | None:
        lines = self.head.splitlines()
        return int(lines[0].split()[1]) if lines else None

    def header(self, name: str) -> str | None:
        for line in self.head.splitlines()[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name:
                return value.strip()
        return None


async def curl(url: str, *args: str) -> CurlResult:
    command = [need("curl"), "-sS", "--noproxy", "*", "--max-time", "10", "-D", "-", *args, url]
    with trio.fail_after(CLIENT_TIMEOUT):
        done = await trio.run_process(command, capture_stdout=True, capture_stderr=True, check=False)
    head, _, body = done.stdout.partition(b"\r\n\r\n")  # -D -: the response head, then the body
    return CurlResult(done.returncode, head.decode("latin-1"), body, done.stderr.decode(errors="replace"))


async def raw_exchange(port: int, payload: bytes, *, half_close: bool = False) -> bytes:
    """Connect, send ``payload`` (then end our side when ``half_close``), and read until the proxy ends the
    connection (EOF or reset); what came back."""
    with trio.fail_after(CLIENT_TIMEOUT):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(payload)
            if half_close:
                await stream.send_eof()
            answer = bytearray()
            try:
                while data := await stream.receive_some():
                    answer += data
            except trio.BrokenResourceError:  # a reset
                pass
            return bytes(answer)


def client_tls_context(svid: Svid | None, alpn: list[str], *, bundle: Svid | None = None) -> ssl.SSLContext:
    """A TLS 1.3 client context presenting ``svid`` (none: no certificate) and verifying the proxy with the
    bundle of ``bundle`` (default: ``svid``'s); no hostname check, as the SVID has a URI SAN only."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False
    trusted = bundle or svid
    if trusted is None:
        context.verify_mode = ssl.CERT_NONE
    else:
        context.load_verify_locations(cafile=str(trusted.bundle))
    if svid is not None:
        context.load_cert_chain(str(svid.cert), str(svid.key))
    context.set_alpn_protocols(alpn)
    return context


async def tls_request(port: int, context: ssl.SSLContext, request: bytes = REQUEST) -> bytes | BaseException:
    """Handshake, send ``request`` at once, read to the end: the answer, or the error the handshake or a read
    raised (TLS 1.3: a client whose certificate is refused has finished its handshake and learns of it here)."""
    with trio.fail_after(CLIENT_TIMEOUT):
        transport = await trio.open_tcp_stream("127.0.0.1", port)
        stream = trio.SSLStream(transport, context, server_hostname=None)
        answer = bytearray()
        try:
            await stream.do_handshake()
            await stream.send_all(request)
            while data := await stream.receive_some():
                answer += data
        except (trio.BrokenResourceError, ssl.SSLError, OSError) as exc:
            await trio.aclose_forcefully(stream)
            return exc if not answer else bytes(answer)
        await trio.aclose_forcefully(stream)
        return bytes(answer)


async def tls_handshake(
    port: int, context: ssl.SSLContext, payload: bytes = b""
) -> tuple[str | None, list[str], bytes]:
    """Handshake (and exchange ``payload`` with an echoing application); the negotiated ALPN, the URI SANs of
    the certificate the proxy presented, and what came back for ``payload``."""
    with trio.fail_after(CLIENT_TIMEOUT):
        stream = trio.SSLStream(await trio.open_tcp_stream("127.0.0.1", port), context, server_hostname=None)
        try:
            await stream.do_handshake()
            peer = stream.getpeercert() or {}
            uris = [value for kind, value in peer.get("subjectAltName", ()) if kind == "URI"]
            echoed = bytearray()
            if payload:
                await stream.send_all(payload)
                while len(echoed) < len(payload) and (data := await stream.receive_some()):
                    echoed += data
            return stream.selected_alpn_protocol(), uris, bytes(echoed)
        finally:
            await trio.aclose_forcefully(stream)


async def refused_after_handshake(port: int, context: ssl.SSLContext, request: bytes = REQUEST) -> bytes:
    """TLS 1.3: the server checks the client's certificate after the client's handshake is done, so a client the
    proxy refuses for its certificate has finished its handshake (asserted) and sent ``request`` before it
    learns of the refusal. What it could read back (an alert or a reset ends the read)."""
    with trio.fail_after(CLIENT_TIMEOUT):
        stream = trio.SSLStream(await trio.open_tcp_stream("127.0.0.1", port), context, server_hostname=None)
        answer = bytearray()
        try:
            await stream.do_handshake()  # must succeed: the refusal comes after it
            await stream.send_all(request)
            while data := await stream.receive_some():
                answer += data
        except trio.BrokenResourceError:
            pass
        finally:
            await trio.aclose_forcefully(stream)
        return bytes(answer)
