"""Real TCP through the installed rules, in a pod/peer namespace pair joined by a veth (IPv4 and IPv6).

The test plays the proxy: it owns the 15001/15006 listeners and, for tproxy, the spoofed-source delivery.
"""

from __future__ import annotations

import socket
import struct
import sys
from collections.abc import Iterator

import pytest

from .netns import Pair, listener, mesh_init, nothing_pending, pod_pair, set_transparent, sh, tcp_socket

pytestmark = [pytest.mark.netns, pytest.mark.usefixtures("require_netns")]

SO_ORIGINAL_DST = 80  # from linux/netfilter_ipv4.h; IP6T_SO_ORIGINAL_DST has the same number
SOL_IPV6 = 41
PROXY_MARK = 0x539
FAMILIES = [pytest.param(socket.AF_INET, id="ipv4"), pytest.param(socket.AF_INET6, id="ipv6")]


@pytest.fixture
def pair() -> Iterator[Pair]:
    with pod_pair() as made:
        yield made


def _addrs(pair: Pair, family: socket.AddressFamily) -> tuple[str, str, str, str]:
    """(pod address, peer address, loopback, wildcard) for the family."""
    if family == socket.AF_INET:
        return pair.pod_v4, pair.peer_v4, "127.0.0.1", "0.0.0.0"
    return pair.pod_v6, pair.peer_v6, "::1", "::"


def _original_dst(sock: socket.socket, family: socket.AddressFamily) -> tuple[str, int]:
    if family == socket.AF_INET:
        raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
        port, addr = struct.unpack("!2xH4s8x", raw)
        return socket.inet_ntop(socket.AF_INET, addr), port
    raw = sock.getsockopt(SOL_IPV6, SO_ORIGINAL_DST, 28)
    port, addr = struct.unpack("!2xH4x16s4x", raw)
    return socket.inet_ntop(socket.AF_INET6, addr), port


def _init(pair: Pair, *args: str) -> None:
    done = mesh_init(pair.pod, "--ipv6=on", *args)
    assert done.returncode == 0, done.stderr


def _accept(sock: socket.socket) -> socket.socket:
    conn, _ = sock.accept()
    conn.settimeout(5)
    return conn


@pytest.mark.parametrize("family", FAMILIES)
def test_outbound_is_redirected_except_the_proxys_own_and_excluded_traffic(
    pair: Pair, family: socket.AddressFamily
) -> None:
    pod_ip, peer_ip, loopback, _ = _addrs(pair, family)
    _init(pair, "--exclude-outbound-ports=8082")
    with (
        listener(pair.pod, family, loopback, 15001) as proxy,
        listener(pair.peer, family, peer_ip, 8081) as peer_8081,
        listener(pair.peer, family, peer_ip, 8082) as peer_8082,
    ):
        # An app's connection lands on the proxy, which reads where it was going.
        with tcp_socket(pair.pod, family) as app:
            app.connect((peer_ip, 8080))
            with _accept(proxy) as conn:
                assert _original_dst(conn, family) == (peer_ip, 8080)
                assert conn.getpeername()[0] == pod_ip

        # A socket carrying the proxy mark goes straight out.
        with tcp_socket(pair.pod, family) as marked:
            marked.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, PROXY_MARK)
            marked.connect((peer_ip, 8081))
            with _accept(peer_8081) as conn:
                assert conn.getpeername()[0] == pod_ip
        assert nothing_pending(proxy)

        # So does a process running as the proxy's UID (the venv's python lives outside /root).
        code = (
            "import socket,sys; s=socket.create_connection((sys.argv[1], 8081), timeout=5); "
            "s.sendall(b'uid 1337'); s.close()"
        )
        done = sh(
            "ip", "netns", "exec", pair.pod, "setpriv", "--reuid=1337", "--regid=1337", "--clear-groups",
            sys.executable, "-c", code, peer_ip,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        with _accept(peer_8081) as conn:
            assert conn.recv(100) == b"uid 1337"
        assert nothing_pending(proxy)

        # An excluded port is not intercepted.
        with tcp_socket(pair.pod, family) as app:
            app.connect((peer_ip, 8082))
            _accept(peer_8082).close()
        assert nothing_pending(proxy)


@pytest.mark.parametrize("family", FAMILIES)
def test_inbound_redirect_lands_on_15006_with_the_original_destination(
    pair: Pair, family: socket.AddressFamily
) -> None:
    pod_ip, peer_ip, _, wildcard = _addrs(pair, family)
    _init(pair, "--mode=redirect")
    with (
        listener(pair.pod, family, wildcard, 15006) as proxy,
        listener(pair.pod, family, wildcard, 15000) as admin,
    ):
        with tcp_socket(pair.peer, family) as client:
            client.connect((pod_ip, 8080))
            with _accept(proxy) as conn:
                assert _original_dst(conn, family) == (pod_ip, 8080)
                assert conn.getpeername()[0] == peer_ip
        # The admin port (default inbound exclusion) is reached directly.
        with tcp_socket(pair.peer, family) as client:
            client.connect((pod_ip, 15000))
            _accept(admin).close()
        assert nothing_pending(proxy)


@pytest.mark.parametrize("family", FAMILIES)
def test_tproxy_inbound_and_spoofed_delivery_to_the_app(pair: Pair, family: socket.AddressFamily) -> None:
    pod_ip, peer_ip, _, wildcard = _addrs(pair, family)
    _init(pair, "--mode=tproxy")
    with (
        listener(pair.pod, family, wildcard, 15006, transparent=True) as proxy,
        listener(pair.pod, family, pod_ip, 8080) as app,
        tcp_socket(pair.peer, family) as client,
    ):
        client.connect((pod_ip, 8080))
        with _accept(proxy) as inbound:
            # TPROXY keeps the addresses: the proxy's socket is "the app" to the client.
            assert inbound.getsockname()[:2] == (pod_ip, 8080)
            client_ip, client_port = inbound.getpeername()[:2]
            assert (client_ip, client_port) == (peer_ip, client.getsockname()[1])

            # The proxy delivers to the app as the client: transparent, marked, bound to the client's address.
            with tcp_socket(pair.pod, family) as upstream:
                set_transparent(upstream, family)
                upstream.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, PROXY_MARK)
                upstream.bind((client_ip, 0))
                upstream.connect((pod_ip, 8080))
                with _accept(app) as served:
                    assert served.getpeername()[0] == client_ip
                    # Data both ways, relayed end to end through the "proxy".
                    client.sendall(b"ping from client")
                    upstream.sendall(inbound.recv(100))
                    assert served.recv(100) == b"ping from client"
                    served.sendall(b"pong from app")
                    inbound.sendall(upstream.recv(100))
                    assert client.recv(100) == b"pong from app"
        assert nothing_pending(proxy)
