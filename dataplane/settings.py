"""mesh-proxy's command line: flags in, a frozen ProxySettings out. A bad flag exits 2 naming the flag."""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple

from dataplane.admin.schema import Direction
from dataplane.net.addr import SockAddr
from dataplane.telemetry.retention import DEFAULT_RETAIN_IDLE
from policy.duration import Duration

DEFAULT_ADMIN: Final = SockAddr("127.0.0.1", 15000)
DEFAULT_OUTBOUND_PORT: Final = 15001
DEFAULT_INBOUND_PORT: Final = 15006
DEFAULT_MARK: Final = 0x539  # 1337, the mark mesh-init exempts by default (ztunnel uses the same value)
# Under Kubernetes' default 30 s termination grace period, so the proxy finishes draining before SIGKILL.
DEFAULT_DRAIN_TIMEOUT: Final = Duration(25.0)

MAX_WORKERS: Final = 64  # far above any core count a sidecar gets; catches typos like 1000

IPv6Mode = Literal["auto", "on", "off"]
InboundMode = Literal["redirect", "tproxy"]


class Forward(NamedTuple):
    """A static forward listener: every connection accepted on ``listen`` is relayed to ``upstream``."""

    listen: SockAddr
    upstream: SockAddr
    direction: Direction = "outbound"
    """``inbound`` (--inbound-forward): the connection arrives for the pod, inbound policy and mTLS apply."""

    @property
    def name(self) -> str:
        """The listener's name in /status and logs: ``forward-<port>``, ``inbound-forward-ipv6-<port>``."""
        prefix = "forward" if self.direction == "outbound" else "inbound-forward"
        return f"{prefix}-ipv6-{self.listen.port}" if self.listen.is_ipv6 else f"{prefix}-{self.listen.port}"


@dataclass(frozen=True, slots=True)
class ProxySettings:
    policy_path: str | None
    admin: SockAddr
    outbound_port: int
    inbound_port: int
    inbound_mode: InboundMode
    mark: int
    ipv6: IPv6Mode
    drain_timeout: float
    log_level: str
    forwards: tuple[Forward, ...] = ()
    workers: int = 1
    worker_index: int | None = None
    """Set in a worker process started by the supervisor (--workers > 1); None in the supervisor or alone."""
    worker_admin: str | None = None
    """A worker's private admin endpoint: an abstract unix socket name the supervisor queries."""
    metrics_retain_idle: float = DEFAULT_RETAIN_IDLE
    """Seconds after which a metric series nothing touched is dropped (Linkerd's default: 10 minutes)."""
    worker_lifeline: int | None = None
    """A worker's end of a pipe to its supervisor: end of file when the supervisor dies."""
    identity_dir: str | None = None
    """--identity: the SVID directory (cert.pem, key.pem, bundle.pem) watched for rotation; None: no identity."""


def parse_args(argv: Sequence[str] | None = None) -> ProxySettings:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if len({ns.outbound_port, ns.inbound_port, ns.admin.port}) != 3:
        parser.error("--outbound-port, --inbound-port and --admin must use three different ports")
    forwards: tuple[Forward, ...] = tuple(ns.forward or ())
    inbound_forwards = tuple(fwd._replace(direction="inbound") for fwd in ns.inbound_forward or ())
    proxy_ports = {ns.outbound_port, ns.inbound_port, ns.admin.port}
    for flag, given in (("--forward", forwards), ("--inbound-forward", inbound_forwards)):
        problem = _forward_conflict(given, proxy_ports)
        if problem is not None:
            parser.error(f"{flag}: {problem}")
    if _forward_conflict(forwards + inbound_forwards, proxy_ports) is not None:
        parser.error("--inbound-forward: a LISTEN address is also given to --forward")
    forwards += inbound_forwards
    return ProxySettings(
        policy_path=ns.policy,
        admin=ns.admin,
        outbound_port=ns.outbound_port,
        inbound_port=ns.inbound_port,
        inbound_mode=ns.inbound_mode,
        mark=ns.mark,
        ipv6=ns.ipv6,
        drain_timeout=ns.drain_timeout.seconds,
        metrics_retain_idle=ns.metrics_retain_idle.seconds,
        log_level=ns.log_level,
        forwards=forwards,
        workers=ns.workers,
        worker_index=ns.worker_index,
        worker_admin=ns.worker_admin,
        worker_lifeline=ns.worker_lifeline,
        identity_dir=ns.identity,
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mesh-proxy",
        description="triomesh's sidecar proxy: relays every intercepted TCP connection of the pod.",
    )
    p.add_argument(
        "--policy",
        metavar="PATH",
        help="policy bundle (YAML, JSON or TOML), watched for changes; "
        "without it the embedded default policy passes everything through as opaque TCP",
    )
    p.add_argument(
        "--identity",
        type=_directory,
        metavar="DIR",
        help="the proxy's SPIFFE identity: cert.pem, key.pem and bundle.pem as `meshctl ca issue` writes them, "
        "watched for rotation; /ready is 503 while there is no valid identity (without it: no identity)",
    )
    p.add_argument(
        "--admin",
        type=_admin_addr,
        default=DEFAULT_ADMIN,
        metavar="HOST:PORT",
        help="admin endpoint (/live /ready /metrics /connections /status /config); loopback only "
        "(default 127.0.0.1:15000)",
    )
    p.add_argument(
        "--outbound-port",
        type=_port,
        default=DEFAULT_OUTBOUND_PORT,
        metavar="PORT",
        help="port mesh-init redirects the pod's outgoing TCP to (default 15001)",
    )
    p.add_argument(
        "--inbound-port",
        type=_port,
        default=DEFAULT_INBOUND_PORT,
        metavar="PORT",
        help="port mesh-init sends the pod's incoming TCP to (default 15006)",
    )
    p.add_argument(
        "--inbound-mode",
        choices=("redirect", "tproxy"),
        default="redirect",
        help="must match mesh-init --mode (default redirect)",
    )
    p.add_argument(
        "--mark",
        type=_mark,
        default=DEFAULT_MARK,
        metavar="MARK",
        help="SO_MARK on every upstream socket so it is never intercepted again; must match "
        "mesh-init --proxy-mark; 0 disables (default 0x539)",
    )
    p.add_argument(
        "--ipv6",
        choices=("auto", "on", "off"),
        default="auto",
        help="IPv6 listeners: auto skips them when the namespace has no IPv6 (default auto)",
    )
    p.add_argument(
        "--drain-timeout",
        type=_duration,
        default=DEFAULT_DRAIN_TIMEOUT,
        metavar="DURATION",
        help="after SIGTERM, how long open connections may finish (default 25s)",
    )
    p.add_argument(
        "--metrics-retain-idle",
        type=_positive_duration,
        default=Duration(DEFAULT_RETAIN_IDLE),
        metavar="DURATION",
        help="forget a metric series (a target, an authority) nothing touched for this long (default 10m)",
    )
    p.add_argument(
        "--forward",
        type=_forward,
        action="append",
        metavar="LISTEN=UPSTREAM",
        help="a static forward listener (repeatable): relay every connection accepted on LISTEN (HOST:PORT) to "
        "UPSTREAM (HOST:PORT), for ingress-style or non-transparent use without iptables; counted as "
        'direction="outbound", listener forward-<port>',
    )
    p.add_argument(
        "--inbound-forward",
        type=_forward,
        action="append",
        metavar="LISTEN=UPSTREAM",
        help="like --forward, but the connections arrive for the pod: inbound policy applies (mtls mode, "
        'authorization, mesh TLS terminated); counted as direction="inbound", listener inbound-forward-<port>',
    )
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    p.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N",
        help="worker processes sharing the listeners (SO_REUSEPORT), supervised and restarted when they die; "
        "admin, metrics and connections cover all of them (default 1: one process)",
    )
    # Internal: how the supervisor starts its workers.
    p.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-admin", default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-lifeline", type=int, default=None, help=argparse.SUPPRESS)
    return p


def _forward(text: str) -> Forward:
    listen_text, sep, upstream_text = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not LISTEN=UPSTREAM (e.g. 127.0.0.1:8000=127.0.0.1:8080)")
    addrs: list[SockAddr] = []
    for role, part in (("listen", listen_text), ("upstream", upstream_text)):
        try:
            addr = SockAddr.parse(part)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{role} address {exc}") from None
        if addr.port == 0:
            raise argparse.ArgumentTypeError(f"{text!r}: the {role} port must be 1-65535")
        addrs.append(addr)
    listen, upstream = addrs
    if listen == upstream:
        raise argparse.ArgumentTypeError(f"{text!r}: the upstream is the listener itself")
    return Forward(listen, upstream)


def _forward_conflict(forwards: Sequence[Forward], proxy_ports: set[int]) -> str | None:
    """Why these forward listeners cannot all be bound next to the proxy's own ports, or None."""
    seen: set[SockAddr] = set()
    for fwd in forwards:
        if fwd.listen.port in proxy_ports:
            return f"{fwd.listen} uses a port of the outbound, inbound or admin listener"
        if fwd.listen in seen:
            return f"{fwd.listen} is given twice"
        seen.add(fwd.listen)
    return None


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1-65535)")
    return int(text)


def _workers(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a worker count (1-{MAX_WORKERS})")
    return int(text)


def _mark(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (decimal or 0x hex)") from None
    if not 0 <= value <= 0xFFFFFFFF:
        raise argparse.ArgumentTypeError(f"{text!r} does not fit in 32 bits")
    return value


def _duration(text: str) -> Duration:
    try:
        return Duration.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_duration(text: str) -> Duration:
    duration = _duration(text)
    if duration.seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be longer than zero, got {text}")
    return duration


def _directory(text: str) -> str:
    """A non-empty path; whether it holds a valid identity is checked (and re-checked) at run time."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must be a directory path")
    return text


def _admin_addr(text: str) -> SockAddr:
    try:
        addr = SockAddr.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not ipaddress.ip_address(addr.ip).is_loopback:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a loopback address: the admin endpoint shows every connection and must "
            "never be reachable from the network"
        )
    return addr
