"""A gRPC service for the HTTP/2 proxy tests, with grpcio on both ends and no generated code (raw bytes).

Methods of ``test.Echo``: ``Unary`` answers ``echo:<request>``; ``ServerStream`` answers N messages for the
request ``N``; ``Bidi`` echoes every message as it comes; ``Fail`` aborts with the status code named by the
request (``UNAVAILABLE``, ...) and a trailer ``x-detail``; ``Slow`` waits the request's milliseconds (deadlines).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager

import grpc

SERVICE = "test.Echo"
# grpcio would honour http_proxy from the environment; tests talk to their own addresses only.
CHANNEL_OPTIONS = (("grpc.enable_http_proxy", 0),)


def _unary(request: bytes, context: grpc.ServicerContext) -> bytes:
    return b"echo:" + request


def _server_stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    for i in range(int(request)):
        yield b"message %d" % i


def _bidi(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
    yield from requests


def _fail(request: bytes, context: grpc.ServicerContext) -> bytes:
    context.set_trailing_metadata((("x-detail", "failed on purpose"),))
    context.abort(grpc.StatusCode[request.decode()], "failed on purpose")
    raise AssertionError("abort returns only by raising")


def _slow(request: bytes, context: grpc.ServicerContext) -> bytes:
    time.sleep(int(request) / 1000)  # noqa: TID251 - grpcio runs handlers in its own worker threads
    return b"done"


def _handler() -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(_unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(_server_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(_bidi),
            "Fail": grpc.unary_unary_rpc_method_handler(_fail),
            "Slow": grpc.unary_unary_rpc_method_handler(_slow),
        },
    )


def start_server(host: str = "127.0.0.1", port: int = 0) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((_handler(),))
    bound = server.add_insecure_port(f"{host}:{port}")
    server.start()
    return server, bound


@contextmanager
def running_server(host: str = "127.0.0.1", port: int = 0) -> Iterator[int]:
    """A gRPC server in this process; yields its port."""
    server, bound = start_server(host, port)
    try:
        yield bound
    finally:
        server.stop(grace=None)


class Client:
    """Blocking calls to ``test.Echo`` at ``target`` (``host:port``); run them in a thread from trio."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)

    def close(self) -> None:
        self.channel.close()

    def unary(self, message: bytes, timeout: float = 10) -> bytes:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = self.channel.unary_unary(f"/{SERVICE}/Unary")
        result: bytes = call(message, timeout=timeout)
        return result

    def server_stream(self, count: int, timeout: float = 10) -> list[bytes]:
        call: grpc.UnaryStreamMultiCallable[bytes, bytes] = self.channel.unary_stream(f"/{SERVICE}/ServerStream")
        return list(call(str(count).encode(), timeout=timeout))

    def bidi(self, messages: list[bytes], timeout: float = 10) -> list[bytes]:
        call: grpc.StreamStreamMultiCallable[bytes, bytes] = self.channel.stream_stream(f"/{SERVICE}/Bidi")
        return list(call(iter(messages), timeout=timeout))

    def fail(self, code: grpc.StatusCode, timeout: float = 10) -> grpc.RpcError:
        """The error the server's abort produced (its code, details and trailing metadata)."""
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = self.channel.unary_unary(f"/{SERVICE}/Fail")
        try:
            call(code.name.encode(), timeout=timeout)
        except grpc.RpcError as exc:
            return exc
        raise AssertionError("Fail did not fail")

    def slow(self, millis: int, timeout: float) -> bytes:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = self.channel.unary_unary(f"/{SERVICE}/Slow")
        result: bytes = call(str(millis).encode(), timeout=timeout)
        return result


def check(target: str) -> list[str]:
    """Every kind of call against ``target``; the problems found (empty: all as expected)."""
    client = Client(target)
    problems = []
    try:
        if client.unary(b"hi") != b"echo:hi":
            problems.append("unary")
        if client.server_stream(20) != [b"message %d" % i for i in range(20)]:
            problems.append("server streaming")
        messages = [b"m%d" % i for i in range(50)]
        if client.bidi(messages) != messages:
            problems.append("bidirectional streaming")
        error = client.fail(grpc.StatusCode.UNAVAILABLE)
        detail = {(m.key, m.value) for m in error.trailing_metadata()}
        if error.code() != grpc.StatusCode.UNAVAILABLE or not detail >= {("x-detail", "failed on purpose")}:
            problems.append(f"error status and trailers: {error.code()} {detail}")
        try:
            client.slow(3000, timeout=0.3)
            problems.append("deadline: no error")
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                problems.append(f"deadline: {exc.code()}")
    finally:
        client.close()
    return problems


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m tests.apps.grpc_app", description=__doc__)
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=50051)
    p.add_argument("--check", metavar="HOST:PORT", help="run every kind of call against a server and exit (0: ok)")
    args = p.parse_args()
    if args.check:
        problems = check(args.check)
        print("ok" if not problems else "; ".join(problems))
        raise SystemExit(1 if problems else 0)
    server, _ = start_server(args.host, args.port)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
