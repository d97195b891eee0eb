"""Real HTTP/2 clients (nghttp2's nghttp and h2load, curl) against an h2c server built on H2Connection."""

from __future__ import annotations

import pytest
import trio

from dataplane.http2.counters import H2Counters
from tests.dataplane.http2.hello import HELLO, serve_hello
from tests.dataplane.http2.pair import deadline
from tests.tools import need


@pytest.fixture(autouse=True)
def _clients_installed() -> None:
    for tool in ("nghttp", "h2load", "curl"):
        need(tool)


async def _run(*argv: str) -> str:
    done = await trio.run_process(list(argv), capture_stdout=True, capture_stderr=True, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout.decode(errors="replace")


@deadline(60)
async def test_nghttp_h2load_and_curl() -> None:
    counters = H2Counters()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_hello, 0, counters)
        url = f"http://127.0.0.1:{port}/"
        assert await _run("nghttp", "-n", url) == ""
        assert await _run("nghttp", url) == HELLO.decode()
        curl = await _run("curl", "-sS", "--http2-prior-knowledge", url)
        assert curl == HELLO.decode()
        echoed = await _run("curl", "-sS", "--http2-prior-knowledge", "--data-binary", "@/etc/services", url)
        with open("/etc/services") as services:
            assert echoed == services.read()
        out = await _run("h2load", "-n", "2000", "-c", "4", "-m", "10", url)
        assert "2000 succeeded, 0 failed, 0 errored" in out, out
        nursery.cancel_scope.cancel()
    assert counters.flood_closed == {} and counters.protocol_errors == 0
