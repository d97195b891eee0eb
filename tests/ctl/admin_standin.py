"""A stand-in for mesh-proxy's admin endpoint: serves real ``dataplane.admin.schema`` documents over HTTP/1.1.

Used where a real proxy cannot produce the answer (a malformed document, a hang, a non-HTTP reply) and to test
the CLI's rendering against fixed documents. One request per connection, like ``Connection: close``.
"""

from __future__ import annotations

import enum
import socket
from collections.abc import Mapping

import msgspec
import trio

from dataplane.admin.schema import (
    ConnectionInfo,
    ConnectionsReport,
    ListenerInfo,
    ProblemInfo,
    ReloadErrorInfo,
    StatusReport,
)

NOW = 1_700_000_000.0  # the fixed "now" the sample documents are written against


class Fault(enum.Enum):
    NONE = "none"
    HANG = "hang"  # accept, read the request, never answer
    NOT_HTTP = "not_http"  # answer with bytes that are not an HTTP response


class Answer(msgspec.Struct, frozen=True):
    status: int
    body: bytes
    content_type: str = "application/json"


def json_answer(document: msgspec.Struct) -> Answer:
    return Answer(200, msgspec.json.encode(document))


class StandIn:
    def __init__(self, answers: Mapping[str, Answer], fault: Fault = Fault.NONE) -> None:
        self.answers = dict(answers)
        self.fault = fault
        self.requests: list[str] = []

    async def serve(
        self,
        listener_socket: socket.socket | None = None,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serves on ``listener_socket`` (already bound and listening) or on a fresh 127.0.0.1 port."""
        if listener_socket is None:
            listener_socket = socket.socket()
            listener_socket.bind(("127.0.0.1", 0))
            listener_socket.listen()
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(listener_socket))
        task_status.started(listener_socket.getsockname()[1])
        await trio.serve_listeners(self._handle, [listener])

    async def _handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return
                head += chunk
            request_line = head.split(b"\r\n", 1)[0].decode()
            self.requests.append(request_line)
            if self.fault is Fault.HANG:
                await trio.sleep_forever()
            if self.fault is Fault.NOT_HTTP:
                await stream.send_all(b"SSH-2.0-OpenSSH_9.2\r\n")
                return
            path = request_line.split(" ")[1]
            answer = self.answers.get(path, Answer(404, b"not found\n", "text/plain"))
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}.get(answer.status, "Status")
            await stream.send_all(
                f"HTTP/1.1 {answer.status} {reason}\r\nContent-Type: {answer.content_type}\r\n"
                f"Content-Length: {len(answer.body)}\r\nConnection: close\r\n\r\n".encode()
                + answer.body
            )


def sample_connections() -> ConnectionsReport:
    """Inbound IPv6 and outbound IPv4 connections, open and closed, with sizes across the units."""
    return ConnectionsReport(
        open=[
            ConnectionInfo(
                id=12,
                direction="outbound",
                client="198.18.7.11:40412",
                original_dst="198.18.7.12:8080",
                upstream="198.18.7.12:8080",
                protocol="opaque",
                state="open",
                opened_at=NOW - 12.4,
                bytes_to_upstream=1536,
                bytes_to_client=300,
            ),
            ConnectionInfo(
                id=9,
                direction="inbound",
                tls="true",
                client_id="spiffe://cluster.local/ns/shop/sa/web",
                client="[fd00:7472:696f::11]:51234",
                original_dst="[fd00:7472:696f::12]:8080",
                upstream="[fd00:7472:696f::12]:8080",
                protocol="opaque",
                state="client_half_closed",
                opened_at=NOW - 184.0,
                bytes_to_upstream=5 * 1024 * 1024,
                bytes_to_client=12,
            ),
        ],
        recent=[
            ConnectionInfo(
                id=11,
                direction="outbound",
                client="198.18.7.11:40400",
                original_dst="198.18.7.13:9090",
                upstream=None,
                protocol="opaque",
                state="closed",
                opened_at=NOW - 30.0,
                closed_at=NOW - 29.65,
                close_reason="upstream_refused",
                errno="ECONNREFUSED",
            ),
        ],
        opened_total=12,
        closed_total=10,
    )


def sample_status(*, ready: bool = True, reload_error: bool = False) -> StatusReport:
    error = None
    if reload_error:
        error = ReloadErrorInfo(
            at=NOW - 5.0,
            source="/etc/triomesh/policy.yaml",
            message="2 problems",
            problems=[
                ProblemInfo(path="inbound.ports[0].port", message="must be <= 65535"),
                ProblemInfo(path="timeouts.idle", message="invalid duration '5 minutes'"),
            ],
        )
    return StatusReport(
        ready=ready,
        draining=False,
        version="0.1.0",
        pid=4242,
        started_at=NOW - 3723.0,
        uptime_seconds=3723.0,
        policy_name="demo",
        policy_version="1",
        policy_generation=3,
        policy_source="/etc/triomesh/policy.yaml",
        last_reload_error=error,
        listeners=[
            ListenerInfo(name="outbound", address="127.0.0.1:15001"),
            ListenerInfo(name="inbound", address="[::]:15006"),
        ],
        connections_open=2,
    )


def healthy_answers() -> dict[str, Answer]:
    return {
        "/live": Answer(200, b"live\n", "text/plain"),
        "/ready": Answer(200, b"ready\n", "text/plain"),
        "/status": json_answer(sample_status()),
        "/connections": json_answer(sample_connections()),
        "/metrics": Answer(
            200,
            b'# HELP tcp_open_total x\n# TYPE tcp_open_total counter\ntcp_open_total{direction="inbound",'
            b'target_addr="198.18.7.12:8080"} 3\nprocess_cpu_seconds_total 1.5\n',
            "text/plain",
        ),
    }
