"""What applying a candidate policy would do to a running proxy: a verdict for each open connection, and the
bundle's changes to services, routes, meshed destinations and ports (``meshctl policy diff``).

Pure: no I/O. The command fetches the live policy (/config) and open connections (/connections) and renders
the ``PolicyDiff`` this returns. Inbound verdicts follow the proxy's own revocation rule (dataplane/revoke.py):
a connection is ``denied`` exactly when a reload would close it with reason ``policy_revoked``. Outbound ones
follow the reload semantics of services: a connection keeps its generation, so a new policy only moves its next
requests (HTTP) or leaves it to drain; nothing outbound is cut by a reload.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Iterator, Sequence
from typing import Final, Literal, TypeGuard

import msgspec

from dataplane.admin.schema import PER_REQUEST_PROTOCOLS, ConnectionInfo
from policy.codec import duration_text
from policy.duration import Duration
from policy.index import MeshedTarget, PolicyIndex, PortSettings, keeps_inbound
from policy.load import policy_version
from policy.model import (
    AuthorizationRule,
    Endpoint,
    MeshedDestination,
    MtlsMode,
    Policy,
    PortPolicy,
    Route,
    Service,
    ServicePort,
)
from policy.services import ServicePlan, format_address, parse_endpoint, parse_ip

Verdict = Literal["denied", "requests limited", "rerouted", "re-identified", "unchanged"]
VERDICTS: Final[tuple[Verdict, ...]] = ("denied", "requests limited", "rerouted", "re-identified", "unchanged")

# Keyed lists where the order decides (first match wins), so a reordering is a change worth a line.
_ORDERED: Final = (Route, MeshedDestination)
_TIMEOUT_NOTES: Final = (
    ("connect_timeout", "connect timeout"),
    ("idle_timeout", "idle timeout"),
    ("detect_timeout", "detect timeout"),
    ("response_timeout", "response timeout"),
    ("stream_idle_timeout", "stream idle timeout"),
)


class ConnectionVerdict(msgspec.Struct, frozen=True, kw_only=True):
    """What the candidate would do to one open connection, and why."""

    connection: ConnectionInfo
    """The row as the proxy's /connections gave it."""
    verdict: Verdict
    reason: str
    notes: tuple[str, ...] = ()
    """Other changes for its destination (timeouts, protocol, exclusion): what new connections to it get."""


class VerdictCounts(msgspec.Struct, frozen=True, kw_only=True):
    denied: int = 0
    requests_limited: int = 0
    rerouted: int = 0
    re_identified: int = 0
    unchanged: int = 0

    def of(self, verdict: Verdict) -> int:
        return int(getattr(self, _count_field(verdict)))


class PolicyRef(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    version: str


class PolicyChange(msgspec.Struct, frozen=True, kw_only=True):
    """One changed setting, one line."""

    subject: str
    """What it belongs to: ``timeouts``, ``inbound``, ``inbound port 8080``, ``outbound service web``, ..."""
    change: str
    """What changed: ``idle 1h -> 5m``, ``endpoint 10.0.0.4:8080 removed``, ``route api timeout 1s -> 2s``."""


class PolicyDiff(msgspec.Struct, frozen=True, kw_only=True):
    live: PolicyRef
    candidate: PolicyRef
    connections: tuple[ConnectionVerdict, ...]
    counts: VerdictCounts
    changes: tuple[PolicyChange, ...]

    @property
    def disrupts(self) -> bool:
        """Whether some open connection would be treated differently (the command's exit status 3)."""
        return self.counts.unchanged != len(self.connections)


def diff_policies(live: Policy, candidate: Policy, connections: Iterable[ConnectionInfo]) -> PolicyDiff:
    """Compare ``candidate`` with the ``live`` policy, for the proxy's open ``connections``.

    Raises ValueError when a connection's ``original_dst`` is not IP:PORT (an unreadable ``upstream`` is a note).
    """
    old, new = PolicyIndex(live), PolicyIndex(candidate)
    verdicts = tuple(judge(conn, old, new) for conn in sorted(connections, key=lambda conn: conn.id))
    counts = {_count_field(verdict): sum(v.verdict == verdict for v in verdicts) for verdict in VERDICTS}
    return PolicyDiff(
        live=PolicyRef(name=live.name, version=policy_version(live)),
        candidate=PolicyRef(name=candidate.name, version=policy_version(candidate)),
        connections=verdicts,
        counts=VerdictCounts(**counts),
        changes=tuple(policy_changes(live, candidate)),
    )


def _count_field(verdict: Verdict) -> str:
    return verdict.replace(" ", "_").replace("-", "_")


# === verdicts for open connections ===


def judge(conn: ConnectionInfo, old: PolicyIndex, new: PolicyIndex) -> ConnectionVerdict:
    """The verdict on one open connection when ``new`` replaces ``old``."""
    ip, port = _address(conn.original_dst, "original_dst")
    if conn.direction == "inbound":
        before, after = old.inbound(port), new.inbound(port)
        verdict, reason = _judge_inbound(conn, port, before, after)
        notes = list(_settings_notes(before, after))
    else:
        before, after = old.outbound(ip, port), new.outbound(ip, port)
        verdict, reason, notes = _judge_outbound(conn, ip, port, old, new)
        notes += _settings_notes(before, after)
    return ConnectionVerdict(connection=conn, verdict=verdict, reason=reason, notes=tuple(notes))


def _address(text: str, field: str) -> tuple[str, int]:
    try:
        ip, port = parse_endpoint(text)
    except ValueError as exc:
        raise ValueError(f"{field} {text!r} is not IP:PORT: {exc}") from None
    if port is None:
        raise ValueError(f"{field} {text!r} has no port")
    return ip, port


def _judge_inbound(conn: ConnectionInfo, port: int, before: PortSettings, after: PortSettings) -> tuple[Verdict, str]:
    """The proxy's revocation rule (``policy.index.keeps_inbound``, what dataplane/revoke.py closes by), with the
    reason in words."""
    who = conn.client_id or "a plaintext client"
    if after.excluded:
        return "unchanged", f"port {port} {'stays' if before.excluded else 'becomes'} excluded: relayed untouched"
    per_request = conn.protocol in PER_REQUEST_PROTOCOLS
    mesh_tls = conn.tls == "true"
    if keeps_inbound(after, mesh_tls=mesh_tls, peer_id=conn.client_id, per_request=per_request):
        if after.authorization == before.authorization and not before.excluded:
            return "unchanged", f"port {port}'s authorization is unchanged"
        if per_request and not after.authorization.allows_tcp(conn.client_id):
            return (
                "requests limited",
                f"port {port} admits {who} only for some paths or methods: its other requests get 403",
            )
        change = "is no longer excluded" if before.excluded else "changes its authorization"
        return "unchanged", f"port {port} {change}; its rules still allow {who}"
    if after.mtls is MtlsMode.STRICT and not mesh_tls:
        strict = "is strict" if before.mtls is MtlsMode.STRICT and not before.excluded else "becomes strict"
        reason = f"plaintext client and port {port} {strict}: mesh mTLS only"
    elif per_request:
        reason = f"no rule of port {port} admits {who} any more"
    else:
        kind = "an opaque connection" if conn.protocol == "opaque" else f"an opaque ({conn.protocol}) connection"
        reason = f"no rule of port {port} allows {who} on {kind}"
    if conn.state != "open":
        # The proxy revokes only connections in state open; a half-closed one is left to finish.
        return "unchanged", f"{reason}, but it is {conn.state} and a reload closes only open connections"
    return "denied", reason


def _judge_outbound(
    conn: ConnectionInfo, ip: str, port: int, old: PolicyIndex, new: PolicyIndex
) -> tuple[Verdict, str, list[str]]:
    """Rerouted (its destination maps elsewhere, or its endpoint leaves the service), else re-identified (the
    identity its server must prove changes), else unchanged."""
    notes: list[str] = []
    try:
        upstream = _address(conn.upstream, "upstream") if conn.upstream is not None else None
    except ValueError as exc:
        upstream = None
        notes.append(f"{exc}: its endpoint was not checked")
    rerouted = _reroute(format_address(ip, port), upstream, old.service(ip, port), new.service(ip, port))
    if rerouted is not None:
        # What its old server must prove no longer matters: new requests go elsewhere.
        return "rerouted", rerouted, notes
    # The server the connection reached: its endpoint (or original destination) is what must prove an identity.
    server = upstream if upstream is not None else (ip, port)
    reidentified = _reidentify(format_address(*server), old.meshed(*server), new.meshed(*server))
    if reidentified is not None:
        return "re-identified", reidentified, notes
    service = new.service(ip, port)
    where = f"service {service.name}:{service.port}" if service is not None else "not a service"
    return "unchanged", f"same destination ({where}) and server identity", notes


def _reroute(
    dst: str, upstream: tuple[str, int] | None, before: ServicePlan | None, after: ServicePlan | None
) -> str | None:
    if before is None and after is None:
        return None
    if before is None:
        assert after is not None
        return f"{dst} becomes service {after}: new requests and connections go to its endpoints"
    if after is None:
        return f"{dst} is no longer service {before}: new requests go to {dst} itself"
    if before.key != after.key:
        return f"{dst} moves from service {before} to {after}"
    if upstream is None or upstream in {endpoint.address for endpoint in after.endpoints}:
        return None
    left = f"endpoint {format_address(*upstream)} leaves service {after}"
    if not after.endpoints:
        return f"{left}: it drains (its requests finish); the service has no endpoints left, new requests get 503"
    return f"{left}: it drains (its requests finish, new ones go to the other endpoints)"


def _reidentify(server: str, before: MeshedTarget | None, after: MeshedTarget | None) -> str | None:
    old = before.expected.pattern if before is not None else None
    new = after.expected.pattern if after is not None else None
    if old == new:
        return None
    if old is None:
        return f"{server} becomes meshed: its proxy must prove {new}"
    if new is None:
        return f"{server} is no longer meshed (was {old}): plaintext"
    return f"{server}'s proxy must prove {new} instead of {old}"


def _settings_notes(before: PortSettings, after: PortSettings) -> Iterator[str]:
    if before.excluded != after.excluded:
        yield "becomes excluded (relayed untouched)" if after.excluded else "no longer excluded"
    if before.protocol != after.protocol:
        yield f"protocol {before.protocol.value} -> {after.protocol.value}"
    for field, label in _TIMEOUT_NOTES:
        old, new = getattr(before, field), getattr(after, field)
        if old != new:
            yield f"{label} {_seconds(old)} -> {_seconds(new)}"


def _seconds(value: float | None) -> str:
    return "none" if value is None else duration_text(Duration(value))


# === changes to the bundle ===


def policy_changes(live: Policy, candidate: Policy) -> list[PolicyChange]:
    """Every changed setting, one line each, in the bundle's order, the lines of one subject together."""
    found = [
        change
        for section in ("timeouts", "inbound", "outbound")
        for change in _struct_changes(getattr(live, section), getattr(candidate, section), section, "")
    ]
    first: dict[str, int] = {}
    for number, change in enumerate(found):
        first.setdefault(change.subject, number)
    return sorted(found, key=lambda change: first[change.subject])


def _struct_changes(
    old: msgspec.Struct, new: msgspec.Struct, subject: str, prefix: str, *, skip: Sequence[str] = ()
) -> Iterator[PolicyChange]:
    for field in msgspec.structs.fields(type(old)):
        a, b = _canonical(field.name, getattr(old, field.name)), _canonical(field.name, getattr(new, field.name))
        if a == b or field.name in skip:
            continue
        label = f"{prefix}{field.name}"
        if isinstance(a, msgspec.Struct) and type(a) is type(b):
            yield from _struct_changes(a, b, subject, f"{label}.")
        elif _keyed(a) and _keyed(b):
            yield from _keyed_changes(a, b, subject, prefix, label)
        elif field.name == "authorization":
            yield PolicyChange(subject=subject, change=f"{label} {_rules(a)} -> {_rules(b)}")
        elif isinstance(a, tuple) and isinstance(b, tuple):
            yield PolicyChange(subject=subject, change=f"{label} {_members(a, b)}")
        else:
            yield PolicyChange(subject=subject, change=f"{label} {_show(a)} -> {_show(b)}")


def _canonical(field: str, value: object) -> object:
    """Addresses and networks in one spelling, so ``fd00:0::1`` and ``fd00::1`` are no change."""
    if field == "addresses" and isinstance(value, tuple):
        return tuple(parse_ip(str(address)) for address in value)
    if field == "exclude_cidrs" and isinstance(value, tuple):
        return tuple(str(ipaddress.ip_network(str(cidr), strict=False)) for cidr in value)
    return value


def _keyed(value: object) -> TypeGuard[tuple[msgspec.Struct, ...]]:
    return isinstance(value, tuple) and all(_key(item) is not None for item in value)


def _key(item: object) -> str | None:
    """How an item of a list is known across versions, or None when it is a plain value (or a rule)."""
    match item:
        case Service():
            return f"service {item.name}"
        case Route():
            return f"route {item.name}"
        case PortPolicy() | ServicePort():
            return f"port {item.port}"
        case Endpoint():
            ip, port = parse_endpoint(item.address)
            return f"endpoint {format_address(ip, port) if port is not None else ip}"
        case MeshedDestination():
            ports = f" ports {','.join(map(str, sorted(item.ports)))}" if item.ports else ""
            return f"meshed {ipaddress.ip_network(item.cidr, strict=False)}{ports}"
    return None


def _key_fields(item: msgspec.Struct) -> tuple[str, ...]:
    """The fields ``_key`` names an item by: equal keys mean equal values, whatever the spelling."""
    match item:
        case Service() | Route():
            return ("name",)
        case PortPolicy() | ServicePort():
            return ("port",)
        case Endpoint():
            return ("address",)
        case MeshedDestination():
            return ("cidr", "ports")
    return ()


def _keyed_changes(
    old: Sequence[msgspec.Struct], new: Sequence[msgspec.Struct], subject: str, prefix: str, label: str
) -> Iterator[PolicyChange]:
    """Items added, removed or changed, by key; at a section's top level each item is a subject of its own
    (``inbound port 8080``, ``outbound service web``), deeper ones are named in the line (``route api ...``)."""
    before = {_key(item): item for item in old}
    after = {_key(item): item for item in new}
    top = prefix == "" and subject in ("inbound", "outbound")

    def where(key: str) -> tuple[str, str]:
        return (f"{subject} {key}", "") if top else (subject, f"{prefix}{key} ")

    for key, item in after.items():
        assert key is not None
        at, lead = where(key)
        if key not in before:
            yield PolicyChange(subject=at, change=f"{lead}added{_summary(item)}".strip())
        else:
            yield from _struct_changes(before[key], item, at, lead, skip=_key_fields(item))
    for key in before:
        assert key is not None
        if key not in after:
            at, lead = where(key)
            yield PolicyChange(subject=at, change=f"{lead}removed".strip())
    shared_old = [key for key in before if key in after]
    shared_new = [key for key in after if key in before]
    if shared_old != shared_new and isinstance((old or new)[0], _ORDERED):
        order = f"[{', '.join(map(str, shared_old))}] -> [{', '.join(map(str, shared_new))}]"
        yield PolicyChange(subject=subject, change=f"{label} order (first match wins) {order}")


def _summary(item: msgspec.Struct) -> str:
    """The settings of an added item that are not defaults, as `` (a=x, b=y)``."""
    if isinstance(item, Service):
        ports = ", ".join(str(port.port) for port in item.ports)
        return (
            f": {', '.join(item.addresses)} port(s) {ports}, {len(item.endpoints)} endpoint(s),"
            f" {len(item.routes)} route(s)"
        )
    shown = ", ".join(_settings(item, skip=_key_fields(item)))
    return f" ({shown})" if shown else ""


def _settings(item: msgspec.Struct, *, skip: Sequence[str] = ()) -> Iterator[str]:
    """``field value`` for each field of ``item`` not at its default."""
    for field in msgspec.structs.fields(type(item)):
        value = getattr(item, field.name)
        if field.name not in skip and value != field.default:
            yield f"{field.name} {_rules(value) if field.name == 'authorization' else _show(value)}"


def _members(old: tuple[object, ...], new: tuple[object, ...]) -> str:
    added = [_show(value) for value in new if value not in old]
    removed = [_show(value) for value in old if value not in new]
    if not added and not removed:
        return f"reordered {_show(old)} -> {_show(new)}"
    return " ".join([*(f"+{value}" for value in added), *(f"-{value}" for value in removed)])


def _rules(rules: object) -> str:
    if rules is None:
        return "null (every client)"
    if rules == ():
        return "[] (no client)"
    return _show(rules)


def _show(value: object) -> str:
    match value:
        case None:
            return "null"
        case bool():
            return "true" if value else "false"
        case Duration():
            return duration_text(value)
        case enum.Enum():
            return str(value.value)
        case tuple():
            return f"[{', '.join(_show(item) for item in value)}]"
        case AuthorizationRule():
            return _rule(value)
        case msgspec.Struct():
            return f"{{{', '.join(_settings(value)) or 'defaults'}}}"
    return str(value)


def _rule(rule: AuthorizationRule) -> str:
    parts = [*rule.identities, *(["unauthenticated"] if rule.unauthenticated else [])]
    text = " ".join(parts) or "nobody"
    if rule.paths:
        text += f" paths {','.join(rule.paths)}"
    if rule.methods:
        text += f" methods {','.join(rule.methods)}"
    return f"{{{text}}}"
