"""FirewallConfig: what mesh-init installs, validated on construction, plus the parsers for its flag values.

Pure: no I/O. Every check raises ``ConfigError`` naming the field, so the CLI can name the flag and the policy
loader the policy path.
"""

from __future__ import annotations

import enum
import ipaddress
from typing import Final

import msgspec

PORT_MIN: Final = 1
PORT_MAX: Final = 65535
MARK_MAX: Final = 0xFFFFFFFF
UID_MAX: Final = 0xFFFFFFFE  # (uid_t)-1 means "no uid" to the kernel, so it can never own a socket
# Routing tables the kernel reserves (unspec, default, main, local); a TPROXY table must be a fresh one.
RESERVED_TABLES: Final = frozenset({0, 253, 254, 255})

DEFAULT_PROXY_UID: Final = 1337  # Istio's and triomesh's proxy user
DEFAULT_PROXY_MARK: Final = 0x539  # 1337: the SO_MARK the proxy puts on its own sockets (as ztunnel does)
DEFAULT_TPROXY_MARK: Final = 0x53A  # 1338: routes packets owned by the proxy to the local table
DEFAULT_TPROXY_TABLE: Final = 133  # Istio's InboundTProxyRouteTable
DEFAULT_OUTBOUND_PORT: Final = 15001
DEFAULT_INBOUND_PORT: Final = 15006
DEFAULT_ADMIN_PORT: Final = 15000  # the proxy's admin port is never intercepted inbound by default


class ConfigError(ValueError):
    """A configuration value is invalid; ``field`` names it (a FirewallConfig field or a policy path)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _check_int(field: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ConfigError(field, f"{value} is out of range ({low}-{high})")


def _check_port(field: str, value: int) -> None:
    if not PORT_MIN <= value <= PORT_MAX:
        raise ConfigError(field, f"port {value} is out of range ({PORT_MIN}-{PORT_MAX})")


class Mode(enum.Enum):
    """How inbound TCP reaches the proxy's inbound port."""

    # nat REDIRECT: the proxy reads the original destination with SO_ORIGINAL_DST; the app sees the proxy.
    REDIRECT = "redirect"
    # mangle TPROXY: the listener sees the original destination as its local address and the proxy can deliver
    # to the app with the client's own source address.
    TPROXY = "tproxy"


class _Struct(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base: immutable, strict about unknown fields, keyword-only (DESIGN.md 6.6)."""


class PortRange(_Struct, frozen=True):
    """An inclusive range of TCP ports; a single port has ``first == last``."""

    first: int
    last: int

    def __post_init__(self) -> None:
        for value in (self.first, self.last):
            _check_port("port", value)
        if self.first > self.last:
            raise ConfigError("port", f"range {self.first}-{self.last} is backwards (write {self.last}-{self.first})")

    @property
    def width(self) -> int:
        """How many of multiport's 15 slots this entry takes: a range counts 2."""
        return 1 if self.first == self.last else 2

    def render(self) -> str:
        """The multiport spelling: ``8080`` or ``8000:8100``."""
        return str(self.first) if self.first == self.last else f"{self.first}:{self.last}"


class FirewallConfig(_Struct, frozen=True):
    """Everything that decides the generated rules. Validated on construction (raises ConfigError)."""

    mode: Mode = Mode.REDIRECT
    proxy_uid: int = DEFAULT_PROXY_UID
    """Traffic from sockets owned by this UID is never redirected (the proxy's own upstream connections)."""
    proxy_mark: int = DEFAULT_PROXY_MARK
    """Traffic from sockets with this SO_MARK is never redirected (the proxy's own upstream connections)."""
    tproxy_mark: int = DEFAULT_TPROXY_MARK
    """tproxy mode: fwmark that sends packets to the proxy through the local routing table."""
    tproxy_table: int = DEFAULT_TPROXY_TABLE
    """tproxy mode: routing table holding the ``local default dev lo`` routes."""
    outbound_port: int = DEFAULT_OUTBOUND_PORT
    inbound_port: int = DEFAULT_INBOUND_PORT
    exclude_inbound_ports: tuple[PortRange, ...] = (PortRange(first=DEFAULT_ADMIN_PORT, last=DEFAULT_ADMIN_PORT),)
    exclude_outbound_ports: tuple[PortRange, ...] = ()
    exclude_outbound_cidrs: tuple[str, ...] = ()
    """IPv4 and IPv6 networks; each goes to the rules of its own family."""

    def __post_init__(self) -> None:
        _check_int("proxy_uid", self.proxy_uid, 0, UID_MAX)
        _check_int("proxy_mark", self.proxy_mark, 1, MARK_MAX)
        _check_int("tproxy_mark", self.tproxy_mark, 1, MARK_MAX)
        _check_int("tproxy_table", self.tproxy_table, 1, MARK_MAX)
        if self.tproxy_table in RESERVED_TABLES:
            raise ConfigError("tproxy_table", f"{self.tproxy_table} is a table the kernel reserves; pick another")
        if self.tproxy_mark == self.proxy_mark:
            raise ConfigError("tproxy_mark", EQUAL_MARKS_REASON.format(mark=hex(self.tproxy_mark)))
        _check_port("outbound_port", self.outbound_port)
        _check_port("inbound_port", self.inbound_port)
        if self.inbound_port == self.outbound_port:
            raise ConfigError(
                "inbound_port",
                f"{self.inbound_port} equals the outbound port: the proxy tells directions apart by listener",
            )
        for cidr in self.exclude_outbound_cidrs:
            parse_cidr("exclude_outbound_cidrs", cidr)


EQUAL_MARKS_REASON: Final = (
    "{mark} equals the proxy mark: the proxy's own sockets carry the proxy mark, and packets with the tproxy "
    "mark are routed back into the pod's local table, so nothing the proxy sends could leave the pod "
    "(and its spoofed deliveries to the app could not be told apart from replies)"
)


# === parsers for flag values (each raises ValueError with a message that fits after the flag name) ===


def parse_int(text: str, what: str) -> int:
    """Decimal or 0x-prefixed hexadecimal."""
    try:
        return int(text.strip(), 0)
    except ValueError:
        raise ValueError(f"{text!r} is not a number ({what})") from None


def parse_port(text: str) -> int:
    value = parse_int(text, "a TCP port, 1-65535")
    if not PORT_MIN <= value <= PORT_MAX:
        raise ValueError(f"port {value} is out of range ({PORT_MIN}-{PORT_MAX})")
    return value


def parse_ports(text: str) -> tuple[PortRange, ...]:
    """``"22,8000-8100"`` -> port ranges; an empty string means none."""
    ranges: list[PortRange] = []
    for item in _split_list(text):
        first, sep, last = item.partition("-")
        low = parse_port(first)
        high = parse_port(last) if sep else low
        if low > high:
            raise ValueError(f"port range {item!r} is backwards (write {high}-{low})")
        ranges.append(PortRange(first=low, last=high))
    return tuple(ranges)


def parse_cidr(field: str, text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """One IPv4 or IPv6 network; a bare address means a single host. Host bits must be zero."""
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise ConfigError(field, f"{text!r} is not a valid CIDR ({exc})") from None


def parse_cidrs(text: str) -> tuple[str, ...]:
    """``"10.0.0.0/8,fd00::/8"`` -> canonical CIDR strings; an empty string means none."""
    out: list[str] = []
    for item in _split_list(text):
        try:
            out.append(parse_cidr("cidr", item).with_prefixlen)
        except ConfigError as exc:
            raise ValueError(exc.message) from None
    return tuple(out)


def _split_list(text: str) -> list[str]:
    items = [item.strip() for item in text.split(",")]
    if items == [""]:
        return []
    if "" in items:
        raise ValueError(f"{text!r} has an empty item")
    return items


def merge_port_ranges(ranges: tuple[PortRange, ...]) -> tuple[PortRange, ...]:
    """Sorted, with overlapping and adjacent ranges joined: the same set of ports in the fewest entries."""
    merged: list[PortRange] = []
    for item in sorted(ranges, key=lambda r: (r.first, r.last)):
        if merged and item.first <= merged[-1].last + 1:
            last = max(item.last, merged[-1].last)
            merged[-1] = PortRange(first=merged[-1].first, last=last)
        else:
            merged.append(item)
    return tuple(merged)
