"""Cross-field checks no type can express: repeated ports, excluded ports that are also configured, bad CIDRs,
zero timeouts; those of ``outbound.services`` are in ``policy.service_checks``.

Pure: no I/O. Runs on the checked document from ``policy.shape`` (plain dicts and lists whose values are
converted, or ``INVALID``), so a document with type errors still gets these checks on its well-formed parts
and the operator sees every problem at once. Values that failed their type check are skipped.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Final

from policy import checked
from policy.duration import Duration
from policy.problems import Problem, field_path, item_path, show
from policy.service_checks import check_services

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# What a zero timeout would do, said in the message so the operator sees why it is refused.
_ZERO_EFFECT: Final = {
    "connect": "fail every connection before it starts",
    "idle": "close every connection at once",
    "detect": "give up detection before any byte can arrive (use protocol: opaque for that)",
    "response": "answer every HTTP request 504 (use null to wait without limit)",
    "stream_idle": "reset every HTTP/2 stream at once",
}
# Timeouts a port entry can override, by its field suffix; stream_idle is per bundle only.
_PORT_TIMEOUTS: Final = ("connect", "idle", "detect", "response")
_DIRECTIONS: Final = ("inbound", "outbound")


def check_semantics(document: object) -> list[Problem]:
    """Every cross-field problem in a checked document, in document order."""
    doc = checked.fields(document)
    problems = list(_check_name(doc.get("name")))
    timeouts = checked.fields(doc.get("timeouts"))
    for kind in _ZERO_EFFECT:
        problems += _check_timeout(timeouts.get(kind), field_path("timeouts", kind), kind)
    for direction in _DIRECTIONS:
        problems += _check_direction(checked.fields(doc.get(direction)), direction)
    problems += _check_cidrs(checked.fields(doc.get("outbound")).get("exclude_cidrs"), "outbound.exclude_cidrs")
    problems += _check_mesh(doc)
    problems += check_services(checked.fields(doc.get("outbound")))
    return problems


def _check_mesh(doc: dict[str, object]) -> Iterator[Problem]:
    """Identity patterns, rules that match nobody, inbound-only settings on outbound ports, meshed networks."""
    inbound = checked.fields(doc.get("inbound"))
    yield from _check_rules(inbound.get("authorization"), "inbound.authorization")
    for index, entry in enumerate(checked.items(inbound.get("ports"))):
        path = item_path("inbound.ports", index)
        yield from _check_rules(checked.fields(entry).get("authorization"), field_path(path, "authorization"))
    for index, entry in enumerate(checked.items(checked.fields(doc.get("outbound")).get("ports"))):
        path = item_path("outbound.ports", index)
        for field in ("mtls", "authorization"):
            if checked.fields(entry).get(field) is not None:
                yield Problem(
                    field_path(path, field),
                    f"{field} applies to inbound ports only (the server side decides who may connect); "
                    "move it to inbound.ports",
                )
    for index, entry in enumerate(checked.items(checked.fields(doc.get("outbound")).get("meshed"))):
        path = item_path("outbound.meshed", index)
        fields = checked.fields(entry)
        cidr = fields.get("cidr")
        if isinstance(cidr, str):
            try:
                ipaddress.ip_network(cidr, strict=True)
            except ValueError:
                yield Problem(field_path(path, "cidr"), _why_not_a_network(cidr))
        yield from checked.check_pattern(fields.get("identity"), field_path(path, "identity"))


def _check_rules(rules: object, path: str) -> Iterator[Problem]:
    for index, rule in enumerate(checked.items(rules)):
        rule_path = item_path(path, index)
        fields = checked.fields(rule)
        identities = checked.items(fields.get("identities"))
        for at, pattern in enumerate(identities):
            yield from checked.check_pattern(pattern, item_path(field_path(rule_path, "identities"), at))
        if not identities and fields.get("unauthenticated") is not True:
            yield Problem(
                rule_path,
                "this rule matches no client: list identities (or * for any mesh identity) or set "
                "unauthenticated: true",
            )


def _check_name(name: object) -> Iterator[Problem]:
    if isinstance(name, str) and any(ord(char) < 0x20 or ord(char) == 0x7F for char in name):
        # The name ends up in log lines and `meshctl status`: a newline would forge an extra line.
        yield Problem("name", f"expected one line of text without control characters, got {show(name)}")


def _check_timeout(value: object, path: str, kind: str) -> Iterator[Problem]:
    if isinstance(value, Duration) and value.seconds == 0:
        effect = _ZERO_EFFECT[kind]
        yield Problem(path, f"must be longer than zero, got {value}: a zero {kind} timeout would {effect}")


def _check_direction(direction: dict[str, object], name: str) -> Iterator[Problem]:
    configured: dict[int, str] = {}
    for index, entry in enumerate(checked.items(direction.get("ports"))):
        path = item_path(field_path(name, "ports"), index)
        settings = checked.fields(entry)
        for kind in _PORT_TIMEOUTS:
            field = f"{kind}_timeout"
            yield from _check_timeout(settings.get(field), field_path(path, field), kind)
        port = checked.port(settings.get("port"))
        if port is None:
            continue
        if port in configured:
            yield Problem(
                field_path(path, "port"),
                f"port {port} is already configured by {configured[port]}; merge the two entries",
            )
        else:
            configured[port] = path
    opaque: dict[int, str] = {}
    for index, item in enumerate(checked.items(direction.get("opaque_ports"))):
        path = item_path(field_path(name, "opaque_ports"), index)
        port = checked.port(item)
        if port is not None and port in opaque:
            yield Problem(path, f"port {port} is already listed by {opaque[port]}; list it once")
        elif port is not None:
            opaque[port] = path
    excluded: dict[int, str] = {}
    for index, item in enumerate(checked.items(direction.get("exclude_ports"))):
        path = item_path(field_path(name, "exclude_ports"), index)
        port = checked.port(item)
        if port is None:
            continue
        if port in excluded:
            yield Problem(path, f"port {port} is already excluded by {excluded[port]}; list it once")
            continue
        excluded[port] = path
        if port in configured:
            yield Problem(
                path,
                f"port {port} is excluded here but also configured by {configured[port]}; an excluded port "
                "is never proxied, so its settings would never apply: remove it from one of the two lists",
            )


def _check_cidrs(value: object, path: str) -> Iterator[Problem]:
    networks: list[tuple[_Network, int]] = []
    for index, text in enumerate(checked.items(value)):
        if not isinstance(text, str):
            continue
        try:
            networks.append((ipaddress.ip_network(text, strict=True), index))
        except ValueError:
            yield Problem(item_path(path, index), _why_not_a_network(text))
    yield from _covered_networks(networks, path)


def _why_not_a_network(text: str) -> str:
    """ip_network only says "does not appear to be an IPv4 or IPv6 network": find the real reason."""
    family: type[_Network] = ipaddress.IPv6Network if ":" in text else ipaddress.IPv4Network
    label, bits = ("IPv6", 128) if family is ipaddress.IPv6Network else ("IPv4", 32)
    try:
        family(text, strict=True)
    except ipaddress.NetmaskValueError:
        return f"{show(text)} is not a valid network: the prefix length must be 0 to {bits} for {label}"
    except ValueError as exc:
        if "has host bits set" in str(exc):
            fixed = family(text, strict=False)
            return f"{show(text)} has bits set after the /{fixed.prefixlen} prefix; did you mean {fixed}?"
        return f"{show(text)} is not a valid network in CIDR notation (like 10.0.0.0/8 or fd00::/8): {exc}"
    return f"{show(text)} is not a valid network in CIDR notation (like 10.0.0.0/8 or fd00::/8)"


def _covered_networks(networks: list[tuple[_Network, int]], path: str) -> Iterator[Problem]:
    """Report each network already covered by another entry (a duplicate or a subnet of it).

    CIDR blocks are either nested or disjoint, so after sorting outermost-first by start address a network is
    covered exactly when it lies inside the last uncovered one: O(n log n) instead of comparing every pair.
    """
    found: list[Problem] = []
    for version in (4, 6):
        same_family = [(net, index) for net, index in networks if net.version == version]
        same_family.sort(key=lambda item: (int(item[0].network_address), item[0].prefixlen, item[1]))
        outer: tuple[_Network, int] | None = None
        for net, index in same_family:
            if outer is not None and int(net.broadcast_address) <= int(outer[0].broadcast_address):
                other = item_path(path, outer[1])
                if net == outer[0]:
                    message = f"{net} is listed twice (also {other}); list it once"
                else:
                    message = f"{net} is already covered by {other} ({outer[0]}); remove it"
                found.append(Problem(item_path(path, index), message))
            else:
                outer = (net, index)
    yield from sorted(found, key=lambda problem: _index(problem.path))


def _index(path: str) -> int:
    return int(path[path.rindex("[") + 1 : -1])
