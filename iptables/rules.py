"""Rule generation and change planning: FirewallConfig -> RuleSet -> iptables-restore text. Pure: no I/O.

Rules are written in the canonical form ``iptables-save`` prints them (``--set-xmark``, ``--on-ip``, CIDRs
with a prefix length, hex marks), so the rules we generate can be compared line for line with what the kernel
holds, and deleted with ``-D`` using exactly the text the save output shows.

Every rule carries ``-m comment --comment "triomesh/..."``; all logic lives in chains named ``TRIOMESH_*``,
and the built-in chains hold only one commented jump each. That is what makes cleanup exact: delete our
commented rules from the built-in chains, then flush and delete our chains; nothing else is touched.
"""

from __future__ import annotations

import enum
import ipaddress
import itertools
import re
import shlex
from collections.abc import Iterable, Iterator
from typing import Final

import msgspec

from iptables.config import FirewallConfig, Mode, PortRange, merge_port_ranges

COMMENT_PREFIX: Final = "triomesh/"
CHAIN_PREFIX: Final = "TRIOMESH_"
MULTIPORT_SLOTS: Final = 15  # xt_multiport holds 15 ports; a range takes 2 (linkerd packs the same way)
BUILTIN_CHAINS: Final = frozenset({"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"})

# Our chains, per table (nat TRIOMESH_OUTPUT and mangle TRIOMESH_OUTPUT are different chains).
NAT_OUTPUT: Final = "TRIOMESH_OUTPUT"
NAT_INBOUND: Final = "TRIOMESH_INBOUND"
MANGLE_PRERT: Final = "TRIOMESH_PRERT"
MANGLE_DIVERT: Final = "TRIOMESH_DIVERT"
MANGLE_OUTPUT: Final = "TRIOMESH_OUTPUT"


class Family(enum.Enum):
    IPV4 = "ipv4"
    IPV6 = "ipv6"

    @property
    def any_address(self) -> str:
        return "0.0.0.0" if self is Family.IPV4 else "::"


class Table(enum.Enum):
    # Order matters: tables are applied (and rolled back) in this order.
    NAT = "nat"
    MANGLE = "mangle"


class _Struct(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class Rule(_Struct, frozen=True):
    """One rule: ``-A <chain> <spec>``; ``spec`` is in iptables-save's canonical spelling."""

    chain: str
    spec: str

    def render(self, verb: str = "-A") -> str:
        return f"{verb} {self.chain} {self.spec}"


class TableRules(_Struct, frozen=True):
    """Our chains and rules for one table of one family (both empty when the mode needs nothing there)."""

    table: Table
    chains: tuple[str, ...]
    rules: tuple[Rule, ...]


class RuleSet(_Struct, frozen=True):
    """Everything triomesh wants installed for one address family."""

    family: Family
    tables: tuple[TableRules, ...]

    def table(self, table: Table) -> TableRules:
        return next(t for t in self.tables if t.table is table)


class TproxyRoute(_Struct, frozen=True):
    """The routing a TPROXY rule set needs: ``fwmark MARK lookup TABLE`` + ``local default dev lo``."""

    mark: int
    table: int


# === generation ===


def build_ruleset(config: FirewallConfig, family: Family) -> RuleSet:
    """The rules for ``config`` in ``family`` (CIDR exclusions of the other family are left out)."""
    nat = _nat_rules(config, family)
    mangle = _mangle_rules(config, family) if config.mode is Mode.TPROXY else _empty(Table.MANGLE)
    return RuleSet(family=family, tables=(nat, mangle))


def _empty(table: Table) -> TableRules:
    return TableRules(table=table, chains=(), rules=())


def _rule(chain: str, match: str, comment: str, target: str) -> Rule:
    parts = [match] if match else []
    parts.append(f'-m comment --comment "{COMMENT_PREFIX}{comment}"')
    parts.append(f"-j {target}")
    return Rule(chain=chain, spec=" ".join(parts))


def _nat_rules(config: FirewallConfig, family: Family) -> TableRules:
    rules = [
        _rule("OUTPUT", "-p tcp", "install-output", NAT_OUTPUT),
        _rule(NAT_OUTPUT, f"-m owner --uid-owner {config.proxy_uid}", "ignore-proxy-uid", "RETURN"),
        _rule(NAT_OUTPUT, f"-m mark --mark {config.proxy_mark:#x}", "ignore-proxy-mark", "RETURN"),
        _rule(NAT_OUTPUT, "-o lo", "ignore-loopback", "RETURN"),
        *_port_returns(NAT_OUTPUT, config.exclude_outbound_ports),
        *_cidr_returns(NAT_OUTPUT, config.exclude_outbound_cidrs, family),
        _rule(NAT_OUTPUT, "-p tcp", "redirect-outbound", f"REDIRECT --to-ports {config.outbound_port}"),
    ]
    chains = [NAT_OUTPUT]
    if config.mode is Mode.REDIRECT:
        chains.append(NAT_INBOUND)
        rules += [
            _rule("PREROUTING", "-p tcp", "install-prerouting", NAT_INBOUND),
            _rule(NAT_INBOUND, "-i lo", "ignore-loopback", "RETURN"),
            *_port_returns(NAT_INBOUND, config.exclude_inbound_ports),
            _rule(NAT_INBOUND, "-p tcp", "redirect-inbound", f"REDIRECT --to-ports {config.inbound_port}"),
        ]
    return TableRules(table=Table.NAT, chains=tuple(chains), rules=tuple(rules))


def _mangle_rules(config: FirewallConfig, family: Family) -> TableRules:
    tproxy = f"{config.tproxy_mark:#x}/0xffffffff"
    rules = (
        _rule("PREROUTING", "-p tcp", "install-prerouting", MANGLE_PRERT),
        _rule("OUTPUT", "-p tcp", "install-output", MANGLE_OUTPUT),
        # The proxy's delivery to the app: a SYN with a spoofed (client) source and the proxy mark, over lo.
        # Tag its connection so the app's replies, addressed to the client, can be routed back to the proxy.
        _rule(
            MANGLE_PRERT,
            f"-i lo -m mark --mark {config.proxy_mark:#x} -m addrtype ! --src-type LOCAL",
            "tag-proxy-delivery",
            f"CONNMARK --set-xmark {tproxy}",
        ),
        _rule(MANGLE_PRERT, "-i lo", "ignore-loopback", "RETURN"),
        # Packets of connections that already exist skip TPROXY: those the proxy accepted earlier, and also the
        # replies to connections this pod opened (the outbound proxy's SYN-ACKs), which must reach their own
        # socket. `-m socket --transparent` would miss the latter; plain `-m socket` would match the app's
        # listener for every new SYN. Conntrack knows both (Istio does the same).
        _rule(MANGLE_PRERT, "-p tcp -m conntrack --ctstate RELATED,ESTABLISHED", "divert-established", MANGLE_DIVERT),
        *_port_returns(MANGLE_PRERT, config.exclude_inbound_ports),
        _rule(
            MANGLE_PRERT,
            "-p tcp",
            tproxy_comment(TproxyRoute(mark=config.tproxy_mark, table=config.tproxy_table)),
            f"TPROXY --on-port {config.inbound_port} --on-ip {family.any_address} --tproxy-mark {tproxy}",
        ),
        _rule(MANGLE_DIVERT, "", "divert-mark", f"MARK --set-xmark {tproxy}"),
        _rule(MANGLE_DIVERT, "", "divert-accept", "ACCEPT"),
        # The app's replies to a spoofed source get the tproxy mark back: `ip rule fwmark` sends them to lo.
        _rule(
            MANGLE_OUTPUT,
            f"-m connmark --mark {config.tproxy_mark:#x}",
            "restore-tproxy-mark",
            "CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff",
        ),
    )
    chains = (MANGLE_DIVERT, MANGLE_OUTPUT, MANGLE_PRERT)
    return TableRules(table=Table.MANGLE, chains=chains, rules=rules)


def tproxy_comment(route: TproxyRoute) -> str:
    """The TPROXY rule's comment records the routing it needs, so cleanup can find it from iptables alone."""
    return f"tproxy-inbound-mark-{route.mark:#x}-table-{route.table}"


_TPROXY_COMMENT: Final = re.compile(rf"{COMMENT_PREFIX}tproxy-inbound-mark-(0x[0-9a-f]+)-table-([0-9]+)")


def _port_returns(chain: str, ports: tuple[PortRange, ...]) -> Iterator[Rule]:
    for group in _multiport_groups(merge_port_ranges(ports)):
        listed = ",".join(item.render() for item in group)
        yield _rule(chain, f"-p tcp -m multiport --dports {listed}", f"ignore-ports-{listed}", "RETURN")


def _multiport_groups(ranges: tuple[PortRange, ...]) -> Iterator[tuple[PortRange, ...]]:
    group: list[PortRange] = []
    used = 0
    for item in ranges:
        if used + item.width > MULTIPORT_SLOTS:
            yield tuple(group)
            group, used = [], 0
        group.append(item)
        used += item.width
    if group:
        yield tuple(group)


def _cidr_returns(chain: str, cidrs: tuple[str, ...], family: Family) -> Iterator[Rule]:
    version = 4 if family is Family.IPV4 else 6
    networks = {ipaddress.ip_network(cidr) for cidr in cidrs}
    for net in sorted((n for n in networks if n.version == version), key=lambda n: (n.network_address, n.prefixlen)):
        yield _rule(chain, f"-d {net.with_prefixlen}", f"ignore-cidr-{net.with_prefixlen}", "RETURN")


# === rendering ===


def render_ruleset(ruleset: RuleSet) -> str:
    """iptables-restore text installing ``ruleset`` into empty tables (the golden files hold this)."""
    out: list[str] = []
    for table in ruleset.tables:
        if table.rules:
            out += [
                f"*{table.table.value}",
                *_declare(table.chains),
                *(r.render() for r in table.rules),
                "COMMIT",
            ]
    return "".join(line + "\n" for line in out)


def _declare(chains: Iterable[str]) -> list[str]:
    # Under --noflush, declaring a chain that exists flushes it: exactly what a re-apply needs.
    return [f":{chain} - [0:0]" for chain in chains]


# === parsing iptables-save and planning changes ===


class SavedTable(_Struct, frozen=True):
    """One table as ``iptables-save`` printed it: ``text`` is its block, verbatim, for rollback."""

    table: Table
    chains: tuple[str, ...]
    rules: tuple[Rule, ...]
    text: str

    @property
    def ours(self) -> tuple[Rule, ...]:
        """Our rules: everything in TRIOMESH_ chains, and triomesh/-commented rules in built-in chains."""
        return tuple(
            r
            for r in self.rules
            if r.chain.startswith(CHAIN_PREFIX) or (r.chain in BUILTIN_CHAINS and is_triomesh_rule(r.spec))
        )

    @property
    def our_chains(self) -> tuple[str, ...]:
        return tuple(c for c in self.chains if c.startswith(CHAIN_PREFIX))


def parse_save(text: str) -> dict[Table, SavedTable]:
    """Split ``iptables-save`` output into the tables we manage; tables the output lacks are absent."""
    out: dict[Table, SavedTable] = {}
    known = {t.value: t for t in Table}
    current: Table | None = None
    chains: list[str] = []
    rules: list[Rule] = []
    block: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            current, chains, rules, block = known.get(line[1:]), [], [], []
        if current is None:
            continue
        block.append(line)
        if line.startswith(":"):
            chains.append(line[1:].split()[0])
        elif line.startswith("-A "):
            _, chain, spec = line.split(" ", 2)
            rules.append(Rule(chain=chain, spec=spec))
        elif line == "COMMIT":
            out[current] = SavedTable(
                table=current, chains=tuple(chains), rules=tuple(rules), text="\n".join(block) + "\n"
            )
            current = None
    return out


def is_triomesh_rule(spec: str) -> bool:
    """Whether a rule carries a ``triomesh/`` comment (quoted or not, wherever the comment sits)."""
    try:
        words = shlex.split(spec)
    except ValueError:
        return False
    return any(a == "--comment" and b.startswith(COMMENT_PREFIX) for a, b in itertools.pairwise(words))


def is_up_to_date(saved: SavedTable | None, wanted: TableRules) -> bool:
    """Whether the table holds exactly our wanted chains and rules (so applying would change nothing)."""
    have_chains = set(saved.our_chains) if saved else set()
    have_rules = saved.ours if saved else ()
    return have_chains == set(wanted.chains) and _by_chain(have_rules) == _by_chain(wanted.rules)


def _by_chain(rules: Iterable[Rule]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for rule in rules:
        out.setdefault(rule.chain, []).append(rule.spec)
    return out


def plan_table(saved: SavedTable | None, wanted: TableRules) -> str | None:
    """The ``iptables-restore --noflush`` payload that turns ``saved`` into ``wanted`` (None: nothing to do).

    Removes our jumps from built-in chains (by their exact saved text), declares (and so flushes) our wanted
    chains, adds the wanted rules, then flushes and deletes our chains that are no longer wanted. One payload
    is one transaction: the table never shows a half-applied state. An empty ``wanted`` is a cleanup.
    """
    if is_up_to_date(saved, wanted):
        return None
    present = saved.our_chains if saved else ()
    stale = [c for c in present if c not in wanted.chains]
    lines = [f"*{wanted.table.value}"]
    if saved:
        lines += [r.render("-D") for r in saved.ours if r.chain in BUILTIN_CHAINS]
    lines += _declare(wanted.chains)
    lines += [r.render() for r in wanted.rules]
    # Flush every stale chain before deleting any: one stale chain may still jump to another.
    lines += [f"-F {c}" for c in stale] + [f"-X {c}" for c in stale]
    lines.append("COMMIT")
    return "".join(line + "\n" for line in lines)


def installed_tproxy_routes(saved: SavedTable | None) -> tuple[TproxyRoute, ...]:
    """The TPROXY routing our installed mangle rules depend on, read back from their comments."""
    found: list[TproxyRoute] = []
    for rule in saved.ours if saved else ():
        match = _TPROXY_COMMENT.search(rule.spec)
        if match:
            route = TproxyRoute(mark=int(match[1], 16), table=int(match[2]))
            if route not in found:
                found.append(route)
    return tuple(found)
