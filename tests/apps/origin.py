"""An HTTP/1.1 origin (the standard library's server, keep-alive) that reports what it received.

Every answer is JSON describing the request as it arrived: method, target, every header in order, the body's
length and SHA-256, the client address, and how many requests this connection has carried (keep-alive checks).
Special targets: ``/bytes/N`` answers N deterministic bytes instead, ``/status/N`` answers status N,
``/slow/MS`` waits MS milliseconds first, ``/chunked/N`` answers N chunks of a chunked body.
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import json
import threading  # noqa: TID251 - the standard library's server is threaded; tests run it beside trio
import time
from collections.abc import Iterator
from contextlib import contextmanager

PATTERN = bytes(range(256)) * 256  # 64 KiB, repeated for /bytes/N


def pattern(n: int) -> bytes:
    """The body ``/bytes/N`` answers."""
    whole, rest = divmod(n, len(PATTERN))
    return PATTERN * whole + PATTERN[:rest]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless the client says otherwise

    def setup(self) -> None:
        super().setup()
        self.requests_on_connection = 0

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _answer(self) -> None:
        self.requests_on_connection += 1
        body = self._body()
        parts = self.path.split("/")
        status, payload, chunks = 200, b"", 0
        if len(parts) == 3 and parts[1] == "slow":
            time.sleep(int(parts[2]) / 1000)  # noqa: TID251 - a server thread, not trio
        if len(parts) == 3 and parts[1] == "bytes":
            payload = pattern(int(parts[2]))
        elif len(parts) == 3 and parts[1] == "chunked":
            chunks = int(parts[2])
        else:
            if len(parts) == 3 and parts[1] == "status":
                status = int(parts[2])
            report = {
                "method": self.command,
                "target": self.path,
                "version": self.request_version,
                "headers": [[k, v] for k, v in self.headers.items()],
                "body_length": len(body),
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "client": list(self.client_address[:2]),
                "requests_on_connection": self.requests_on_connection,
            }
            payload = json.dumps(report).encode()
        self.send_response(status)
        if chunks:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(chunks):
                piece = f"chunk {i}\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Type", "application/json" if payload.startswith(b"{") else "application/octet-stream")
        no_body = self.command == "HEAD" or status in (204, 304) or status < 200
        if not no_body or self.command == "HEAD":
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if not no_body:
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _answer


class Origin(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextmanager
def running_origin(host: str = "127.0.0.1", port: int = 0) -> Iterator[tuple[str, int]]:
    """An origin serving in a thread; yields its address."""
    server = Origin((host, port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[0], server.server_address[1]  # type: ignore[misc]
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m tests.apps.origin", description=__doc__)
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8081)
    args = p.parse_args()
    Origin((args.host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
