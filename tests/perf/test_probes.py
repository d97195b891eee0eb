"""/proc probes against real processes and sockets of this test."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from dataplane.net.addr import SockAddr
from perf.probes import Memory, cpu_seconds, established_to, is_listening, memory, parse_smaps_rollup, process_tree

SMAPS_ROLLUP = """\
55d0c0a4b000-7ffd2b9f5000 ---p 00000000 00:00 0                          [rollup]
Rss:               26656 kB
Pss:               18086 kB
Pss_Dirty:         12180 kB
Shared_Clean:       9100 kB
"""


def test_parse_smaps_rollup() -> None:
    assert parse_smaps_rollup(SMAPS_ROLLUP) == Memory(26656, 18086)
    assert Memory(10, 8) - Memory(4, 3) == Memory(6, 5)


def test_tree_cpu_and_memory_of_a_real_child() -> None:
    busy = (
        "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.2: pass\nprint('done', flush=True)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", busy + "import sys; sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"done\n"
        tree = process_tree(os.getpid())
        assert child.pid in tree
        assert cpu_seconds([child.pid]) >= 0.15
        mem = memory([child.pid])
        assert mem.rss_kib > 1000 and 0 < mem.pss_kib <= mem.rss_kib
    finally:
        child.kill()
        child.wait()


def test_listening_and_established_from_the_kernel_tables() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        addr = SockAddr("127.0.0.1", server.getsockname()[1])
        assert not is_listening(addr)
        server.listen(8)
        assert is_listening(addr)
        before = established_to(addr.port)
        with socket.create_connection(addr):
            assert established_to(addr.port) == before + 1
    assert not is_listening(addr)
