"""TPROXY policy routing through pyroute2 (the only module that imports it).

tproxy mode needs, per family: ``ip rule add fwmark MARK lookup TABLE priority TPROXY_RULE_PRIORITY`` and
``ip route add local default dev lo table TABLE``. Marked packets then match a ``local`` route: the kernel
delivers them to a socket on this host (the proxy's transparent listener or socket), whatever their
destination.
We add each only when missing and remove exactly these two, matched on every field we set.
"""

from __future__ import annotations

import enum
import errno
import socket
from typing import Final

import msgspec
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from iptables.errors import CommandError, PrivilegeError
from iptables.rules import Family

# Before main (32766) and default (32767), after what an operator put lower; clear of Istio ambient's 32764.
TPROXY_RULE_PRIORITY: Final = 32760
RTN_LOCAL: Final = 2  # route type "local": deliver to this host
RT_SCOPE_HOST: Final = 254
FWMASK_ALL: Final = 0xFFFFFFFF


class Kind(enum.Enum):
    RULE = "rule"
    ROUTE = "route"


class RoutingItem(msgspec.Struct, frozen=True, kw_only=True):
    """One piece of TPROXY routing: the fwmark rule or the local default route of one family."""

    kind: Kind
    family: Family
    mark: int
    table: int

    def describe(self, verb: str) -> str:
        """The ip(8) spelling, for dry runs and logs."""
        flag = "-4" if self.family is Family.IPV4 else "-6"
        if self.kind is Kind.RULE:
            where = f"fwmark {self.mark:#x} lookup {self.table} priority {TPROXY_RULE_PRIORITY}"
            return f"ip {flag} rule {verb} {where}"
        return f"ip {flag} route {verb} local default dev lo table {self.table}"


def routing_items(family: Family, mark: int, table: int) -> tuple[RoutingItem, RoutingItem]:
    return (
        RoutingItem(kind=Kind.RULE, family=family, mark=mark, table=table),
        RoutingItem(kind=Kind.ROUTE, family=family, mark=mark, table=table),
    )


def _af(family: Family) -> int:
    return socket.AF_INET if family is Family.IPV4 else socket.AF_INET6


def is_present(item: RoutingItem) -> bool:
    with _errors(item, "read"), IPRoute() as ipr:
        if item.kind is Kind.RULE:
            return any(_is_our_rule(rule, item) for rule in ipr.get_rules(family=_af(item.family)))
        lo = _loopback(ipr)
        return any(_is_our_route(r, lo) for r in ipr.get_routes(family=_af(item.family), table=item.table))


def add(item: RoutingItem) -> None:
    _change(item, "add", done_already=(errno.EEXIST,))  # someone added the same meanwhile: goal reached


def remove(item: RoutingItem) -> None:
    _change(item, "del", done_already=(errno.ENOENT, errno.ESRCH))  # already gone: goal reached


def _change(item: RoutingItem, verb: str, done_already: tuple[int, ...]) -> None:
    with _errors(item, verb), IPRoute() as ipr:
        try:
            if item.kind is Kind.RULE:
                ipr.rule(verb, **_rule_fields(item))
            else:
                ipr.route(verb, **_route_fields(item, _loopback(ipr)))
        except NetlinkError as exc:
            if exc.code not in done_already:
                raise


def _rule_fields(item: RoutingItem) -> dict[str, int]:
    return {
        "family": _af(item.family),
        "priority": TPROXY_RULE_PRIORITY,
        "fwmark": item.mark,
        "fwmask": FWMASK_ALL,
        "table": item.table,
    }


def _route_fields(item: RoutingItem, lo: int) -> dict[str, int | str]:
    fields: dict[str, int | str] = {
        "family": _af(item.family),
        "dst": "0.0.0.0/0" if item.family is Family.IPV4 else "::/0",
        "table": item.table,
        "type": RTN_LOCAL,
        "oif": lo,
    }
    if item.family is Family.IPV4:
        fields["scope"] = RT_SCOPE_HOST  # what `ip route add local ...` sets; IPv6 routes have no scope
    return fields


def _is_our_rule(rule: object, item: RoutingItem) -> bool:
    get = rule.get  # type: ignore[attr-defined]  # pyroute2 messages are untyped
    return bool(
        get("priority") == TPROXY_RULE_PRIORITY
        and get("fwmark") == item.mark
        and get("fwmask", FWMASK_ALL) == FWMASK_ALL
        and get("table") == item.table
    )


def _is_our_route(route: object, lo: int) -> bool:
    get = route.get  # type: ignore[attr-defined]  # pyroute2 messages are untyped
    return bool(get("dst_len") == 0 and get("type") == RTN_LOCAL and get("oif") == lo)


def _loopback(ipr: IPRoute) -> int:
    found = ipr.link_lookup(ifname="lo")
    if not found:
        raise CommandError("this network namespace has no loopback device")
    return int(found[0])


class _errors:
    """Maps netlink failures to mesh-init's errors, naming the ip(8) operation that failed."""

    def __init__(self, item: RoutingItem, verb: str) -> None:
        self.what = item.describe(verb)

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, NetlinkError):
            if exc.code == errno.EPERM:
                raise PrivilegeError(f"{self.what}: operation not permitted (needs root or CAP_NET_ADMIN)") from exc
            raise CommandError(f"{self.what} failed: {exc}") from exc
        if isinstance(exc, OSError):
            raise CommandError(f"{self.what} failed: {exc}") from exc
