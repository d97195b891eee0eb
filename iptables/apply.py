"""Plans and applies mesh-init's changes: one atomic ``iptables-restore --noflush`` per table and family.

Resource handling: before changing anything we save every table we will touch. Error handling: when any step
fails (an iptables restore, an ip rule/route change), every step already done is undone in reverse order: each
table is restored from its saved text (without --noflush, so exactly), added routing is removed and removed
routing re-added. The error names the step that failed and anything the rollback could not undo.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Final

import msgspec

from iptables import netlink
from iptables.backend import Backend, Tools, find_tools, require_tools
from iptables.config import FirewallConfig, Mode
from iptables.errors import ApplyError, InitError
from iptables.netlink import RoutingItem
from iptables.rules import (
    Family,
    RuleSet,
    SavedTable,
    Table,
    TableRules,
    TproxyRoute,
    build_ruleset,
    installed_tproxy_routes,
    parse_save,
    plan_table,
)

LOG = logging.getLogger(__name__)

IPV6_SYSCTL: Final = Path("/proc/sys/net/ipv6/conf/all/disable_ipv6")


class Ipv6Choice(enum.Enum):
    AUTO = "auto"
    ON = "on"
    OFF = "off"


class Action(enum.Enum):
    APPLY = "apply"
    CLEANUP = "cleanup"


class TableStep(msgspec.Struct, frozen=True, kw_only=True):
    """One restore transaction, with the saved table to roll back to (None: the table did not exist)."""

    tools: Tools
    table: Table
    before: SavedTable | None
    payload: str

    def describe(self) -> str:
        return f"{self.tools.restore.rsplit('/', 1)[-1]} --noflush ({self.table.value})"


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    """Everything one run will change, in order: routing to add, table transactions, routing to remove."""

    backend: Backend
    families: tuple[Family, ...]
    routing_add: tuple[RoutingItem, ...]
    table_steps: tuple[TableStep, ...]
    routing_remove: tuple[RoutingItem, ...]

    @property
    def empty(self) -> bool:
        return not (self.routing_add or self.table_steps or self.routing_remove)


# === deciding the families ===


def ipv6_enabled(sysctl: Path = IPV6_SYSCTL) -> bool:
    """Whether this network namespace has IPv6 (the sysctl is per namespace)."""
    try:
        return sysctl.read_text().strip() == "0"
    except OSError:
        return False


def choose_families(
    action: Action, choice: Ipv6Choice, backend: Backend
) -> tuple[tuple[Family, ...], tuple[Family, ...]]:
    """(families to install rules in, families only to clean of our rules).

    A family we do not install in is still cleaned when its tools exist, so turning --ipv6 off (or switching
    to cleanup) removes the IPv6 rules an earlier run left.
    """
    require_tools(backend, Family.IPV4, f"the {backend.value} backend")
    v6_tools = find_tools(backend, Family.IPV6) is not None
    v6_kernel = IPV6_SYSCTL.parent.parent.parent.exists()  # /proc/sys/net/ipv6: the kernel has IPv6 at all
    if action is Action.CLEANUP:
        return (), ((Family.IPV4, Family.IPV6) if v6_tools and v6_kernel else (Family.IPV4,))
    if choice is Ipv6Choice.ON:
        if not ipv6_enabled():
            raise InitError("--ipv6 on: IPv6 is disabled in this network namespace (net.ipv6.conf.all.disable_ipv6)")
        require_tools(backend, Family.IPV6, "--ipv6 on")
        return (Family.IPV4, Family.IPV6), ()
    if choice is Ipv6Choice.AUTO and v6_tools and ipv6_enabled():
        return (Family.IPV4, Family.IPV6), ()
    return (Family.IPV4,), ((Family.IPV6,) if v6_tools and v6_kernel else ())


# === planning ===


def make_plan(
    config: FirewallConfig,
    action: Action,
    backend: Backend,
    install: Sequence[Family],
    clean: Sequence[Family],
) -> Plan:
    """Read the current tables and routing (read-only) and work out exactly what to change."""
    steps: list[TableStep] = []
    add: list[RoutingItem] = []
    remove: list[RoutingItem] = []
    for family in (*install, *clean):
        tools = require_tools(backend, family, f"{family.value} rules")
        text = tools.run_save()
        LOG.debug("%s before:\n%s", tools.save, text)
        saved = parse_save(text)
        installing = action is Action.APPLY and family in install
        wanted = build_ruleset(config, family) if installing else _nothing(family)
        for table in Table:
            payload = plan_table(saved.get(table), wanted.table(table))
            if payload is not None:
                steps.append(TableStep(tools=tools, table=table, before=saved.get(table), payload=payload))
        ours = TproxyRoute(mark=config.tproxy_mark, table=config.tproxy_table)
        keep = (ours,) if installing and config.mode is Mode.TPROXY else ()
        # What our installed rules say they depend on, and what this config would have installed.
        known = [*installed_tproxy_routes(saved.get(Table.MANGLE)), ours]
        for route in keep:
            add += [i for i in netlink.routing_items(family, route.mark, route.table) if not netlink.is_present(i)]
        for route in dict.fromkeys(r for r in known if r not in keep):
            remove += [i for i in netlink.routing_items(family, route.mark, route.table) if netlink.is_present(i)]
    return Plan(
        backend=backend,
        families=(*install, *clean),
        routing_add=tuple(add),
        table_steps=tuple(steps),
        routing_remove=tuple(remove),
    )


def _nothing(family: Family) -> RuleSet:
    return RuleSet(family=family, tables=tuple(TableRules(table=t, chains=(), rules=()) for t in Table))


def render_plan(plan: Plan) -> str:
    """The dry-run text: exactly what would be run, as comments plus the restore payloads."""
    out = [f"# backend: {plan.backend.value}; families: {', '.join(f.value for f in plan.families)}"]
    if plan.empty:
        out.append("# nothing to change: the installed rules and routes already match")
    out += [f"# {item.describe('add')}" for item in plan.routing_add]
    for step in plan.table_steps:
        out += [f"# {step.describe()}", step.payload.rstrip("\n")]
    out += [f"# {item.describe('del')}" for item in plan.routing_remove]
    return "\n".join(out) + "\n"


# === applying ===

Undo = tuple[str, Callable[[], None]]


def execute(plan: Plan) -> None:
    """Apply ``plan``; on any failure undo what was done and raise ApplyError."""
    done: list[Undo] = []
    try:
        for item in plan.routing_add:
            LOG.info("%s", item.describe("add"))
            netlink.add(item)
            done.append((item.describe("del"), partial(netlink.remove, item)))
        for step in plan.table_steps:
            LOG.info("%s", step.describe())
            LOG.debug("payload:\n%s", step.payload)
            step.tools.run_restore(step.payload, noflush=True)
            done.append((f"restore {step.tools.family.value} {step.table.value} as saved", partial(_roll_back, step)))
        for item in plan.routing_remove:
            LOG.info("%s", item.describe("del"))
            netlink.remove(item)
            done.append((item.describe("add"), partial(netlink.add, item)))
    except BaseException as exc:
        leftovers = _undo(done)
        if not isinstance(exc, InitError):
            raise
        rolled = "rolled back every change" if not leftovers else "rollback FAILED for: " + "; ".join(leftovers)
        raise ApplyError(f"{exc}; {rolled}") from exc
    if LOG.isEnabledFor(logging.DEBUG):
        for tools in dict.fromkeys(step.tools for step in plan.table_steps):
            LOG.debug("%s after:\n%s", tools.save, tools.run_save())


def _roll_back(step: TableStep) -> None:
    # Without --noflush a restore replaces the whole table: exactly the saved state, our chains gone.
    text = step.before.text if step.before else f"*{step.table.value}\nCOMMIT\n"
    step.tools.run_restore(text, noflush=False)


def _undo(done: list[Undo]) -> list[str]:
    failed: list[str] = []
    for what, undo in reversed(done):
        try:
            undo()
        except InitError as exc:
            LOG.error("rollback step %r failed: %s", what, exc)  # expected
            failed.append(f"{what} ({exc})")
    return failed
