from __future__ import annotations

from dataplane.net.addr import SockAddr
from dataplane.net.loop_guard import LoopGuard

POD = SockAddr("198.18.7.2", 15006)


def test_connection_from_our_own_upstream_socket_is_a_loop() -> None:
    guard = LoopGuard(frozenset({15000, 15001, 15006}))
    mine, dst = SockAddr("198.18.7.2", 40000), SockAddr("198.18.7.3", 8080)
    guard.add_upstream(mine, dst)
    reason = guard.check(mine, dst, SockAddr("127.0.0.1", 15001))
    assert reason is not None and "intercepted again" in reason
    # The kernel reuses a local port for other destinations: another client with that port is no loop.
    assert guard.check(mine, SockAddr("198.18.7.4", 8080), SockAddr("127.0.0.1", 15001)) is None
    guard.discard_upstream(mine, dst)
    assert guard.check(mine, dst, SockAddr("127.0.0.1", 15001)) is None


def test_original_destination_on_our_own_listener_is_a_loop() -> None:
    guard = LoopGuard(frozenset({15000, 15001, 15006}))
    client = SockAddr("198.18.7.9", 5555)
    assert guard.check(client, SockAddr("127.0.0.1", 15001), SockAddr("127.0.0.1", 15001)) is not None
    assert guard.check(client, POD, POD) is not None
    assert guard.check(client, SockAddr("0.0.0.0", 15006), POD) is not None
    # The same port on another host is an ordinary destination.
    assert guard.check(client, SockAddr("198.18.7.3", 15006), POD) is None
    assert guard.check(client, SockAddr("198.18.7.2", 8080), POD) is None
