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


def test_a_forward_listener_client_sharing_an_upstream_port_is_no_loop() -> None:
    # A forward listener's client dials it directly; on loopback the kernel can give that client the very local
    # port of one of our upstream sockets (a different 4-tuple), so only intercepted connections get that check.
    guard = LoopGuard(frozenset({15000, 15001, 15006, 9000}))
    shared, upstream = SockAddr("127.0.0.1", 40000), SockAddr("127.0.0.1", 8080)
    guard.add_upstream(shared, upstream)
    forward_listener = SockAddr("127.0.0.1", 9000)
    assert guard.check(shared, upstream, forward_listener, intercepted=False) is None
    assert guard.check(shared, upstream, forward_listener) is not None
    # Forwarding to one of our own listeners is still refused.
    assert guard.check(shared, SockAddr("127.0.0.1", 15001), forward_listener, intercepted=False) is not None
