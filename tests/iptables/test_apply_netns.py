"""mesh-init against real iptables (both backends) and netlink in throwaway namespaces.

Each namespace starts with foreign rules and a foreign chain in nat and mangle, for both families; every test
proves they survive byte for byte.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from iptables.config import FirewallConfig, Mode, parse_cidrs, parse_ports
from iptables.rules import Family, Table, build_ruleset, parse_save

from .netns import mesh_init, netns, routing, save, sh

pytestmark = [pytest.mark.netns, pytest.mark.usefixtures("require_netns")]

BACKENDS = ["nft", "legacy"]
FAMILIES = ["ipv4", "ipv6"]
FOREIGN = {
    "ipv4": [
        "-t nat -A OUTPUT -d 192.0.2.1/32 -j RETURN",
        "-t mangle -A PREROUTING -s 192.0.2.2/32 -j RETURN",
    ],
    "ipv6": [
        "-t nat -A OUTPUT -d 2001:db8::1/128 -j RETURN",
        "-t mangle -A PREROUTING -s 2001:db8::2/128 -j RETURN",
    ],
}


def _iptables(ns: str, backend: str, family: str, args: str) -> None:
    tool = f"{'iptables' if family == 'ipv4' else 'ip6tables'}-{backend}"
    sh("ip", "netns", "exec", ns, tool, *args.split())


@pytest.fixture
def pod() -> Iterator[str]:
    with netns() as name:
        yield name


def _add_foreign(ns: str, backend: str) -> None:
    for family in FAMILIES:
        for rule in FOREIGN[family]:
            _iptables(ns, backend, family, rule)
        for table in ("nat", "mangle"):
            _iptables(ns, backend, family, f"-t {table} -N FOREIGN")
            _iptables(ns, backend, family, f"-t {table} -A FOREIGN -p udp -j RETURN")
            # A foreign rule that mentions triomesh/ outside a comment, and one after ours would go.
            _iptables(ns, backend, family, f"-t {table} -A OUTPUT -p udp -j FOREIGN")


def _snapshot(ns: str, backend: str) -> str:
    return "".join(save(ns, backend, f) for f in FAMILIES) + routing(ns)


def _ours(ns: str, backend: str, family: str) -> dict[Table, dict[str, list[str]]]:
    """Our chains' rules and our jumps as the kernel holds them, per table and chain."""
    out: dict[Table, dict[str, list[str]]] = {}
    for table, saved in parse_save(save(ns, backend, family)).items():
        for rule in saved.ours:
            out.setdefault(table, {}).setdefault(rule.chain, []).append(rule.spec)
        for chain in saved.our_chains:
            out.setdefault(table, {}).setdefault(chain, [])
    return out


def _expected(config: FirewallConfig, family: str) -> dict[Table, dict[str, list[str]]]:
    out: dict[Table, dict[str, list[str]]] = {}
    for table in build_ruleset(config, Family(family)).tables:
        for chain in table.chains:
            out.setdefault(table.table, {})[chain] = []
        for rule in table.rules:
            out.setdefault(table.table, {}).setdefault(rule.chain, []).append(rule.spec)
    return out


def _without_ours(text: str) -> str:
    """A save output with our chain declarations and rules taken out."""
    keep = []
    for line in text.splitlines():
        if line.startswith(":TRIOMESH_") or "triomesh/" in line:
            continue
        keep.append(line)
    return "\n".join(keep) + "\n"


def _run_ok(ns: str, *args: str, env: dict[str, str] | None = None) -> str:
    done = mesh_init(ns, "--ipv6=on", *args, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _tproxy_routing_present(ns: str, mark: int = 0x53A, table: int = 133) -> list[bool]:
    found = []
    for flag in ("-4", "-6"):
        rules = sh("ip", "-n", ns, flag, "rule").stdout
        found.append(f"32760:\tfrom all fwmark {mark:#x} lookup {table}" in rules)
        routes = sh("ip", "-n", ns, flag, "route", "show", "table", str(table), check=False).stdout
        found.append("local default dev lo" in routes)
    return found


@pytest.mark.parametrize("backend", BACKENDS)
def test_apply_installs_exactly_our_rules_and_keeps_foreign_ones(pod: str, backend: str) -> None:
    _add_foreign(pod, backend)
    before = {f: save(pod, backend, f) for f in FAMILIES}
    config = FirewallConfig(
        exclude_outbound_ports=parse_ports("22,8000-8100"),
        exclude_outbound_cidrs=parse_cidrs("10.0.0.0/8,fd00::/8"),
    )
    _run_ok(
        pod,
        f"--iptables-backend={backend}",
        "--exclude-outbound-ports=22,8000-8100",
        "--exclude-outbound-cidrs=10.0.0.0/8,fd00::/8",
    )
    for family in FAMILIES:
        after = save(pod, backend, family)
        assert _ours(pod, backend, family) == _expected(config, family)
        assert _without_ours(after) == before[family]
        assert "\n-A OUTPUT -p udp -j FOREIGN\n" in after


@pytest.mark.parametrize("backend", BACKENDS)
def test_apply_twice_is_identical_and_auto_picks_the_backend_in_use(pod: str, backend: str) -> None:
    _add_foreign(pod, backend)
    _run_ok(pod, "--mode=tproxy", f"--iptables-backend={backend}")
    first = _snapshot(pod, backend)
    again = mesh_init(pod, "--ipv6=on", "--mode=tproxy")  # auto: the backend holding our rules wins
    assert again.returncode == 0, again.stderr
    assert f"nothing to change ({backend};" in again.stderr
    assert _snapshot(pod, backend) == first


@pytest.mark.parametrize("backend", BACKENDS)
def test_changed_config_replaces_the_old_rules(pod: str, backend: str) -> None:
    _add_foreign(pod, backend)
    before = {f: save(pod, backend, f) for f in FAMILIES}
    _run_ok(pod, f"--iptables-backend={backend}", "--exclude-outbound-ports=22")
    changed = FirewallConfig(outbound_port=4140, proxy_uid=2102, exclude_inbound_ports=parse_ports("4190-4191"))
    _run_ok(
        pod,
        f"--iptables-backend={backend}",
        "--outbound-port=4140",
        "--proxy-uid=2102",
        "--exclude-inbound-ports=4190-4191",
    )
    for family in FAMILIES:
        assert _ours(pod, backend, family) == _expected(changed, family)
        assert _without_ours(save(pod, backend, family)) == before[family]


@pytest.mark.parametrize("backend", BACKENDS)
def test_mode_switch_redirect_tproxy_redirect(pod: str, backend: str) -> None:
    _add_foreign(pod, backend)
    before = {f: save(pod, backend, f) for f in FAMILIES}
    routing_before = routing(pod)
    _run_ok(pod, f"--iptables-backend={backend}")
    assert _tproxy_routing_present(pod) == [False] * 4
    _run_ok(pod, f"--iptables-backend={backend}", "--mode=tproxy")
    for family in FAMILIES:
        assert _ours(pod, backend, family) == _expected(FirewallConfig(mode=Mode.TPROXY), family)
        assert "TRIOMESH_INBOUND" not in save(pod, backend, family)
    assert _tproxy_routing_present(pod) == [True] * 4
    # A different table and mark move the routing with them.
    _run_ok(pod, f"--iptables-backend={backend}", "--mode=tproxy", "--tproxy-table=200", "--tproxy-mark=0x77")
    assert _tproxy_routing_present(pod) == [False] * 4
    assert _tproxy_routing_present(pod, 0x77, 200) == [True] * 4
    _run_ok(pod, f"--iptables-backend={backend}")
    for family in FAMILIES:
        assert _ours(pod, backend, family) == _expected(FirewallConfig(), family)
        assert _without_ours(save(pod, backend, family)) == before[family]
    assert routing(pod) == routing_before


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["redirect", "tproxy"])
def test_cleanup_restores_the_pre_apply_state_exactly(pod: str, backend: str, mode: str) -> None:
    _add_foreign(pod, backend)
    before = _snapshot(pod, backend)
    _run_ok(pod, f"--iptables-backend={backend}", f"--mode={mode}", "--exclude-outbound-cidrs=10.0.0.0/8")
    assert _snapshot(pod, backend) != before
    done = mesh_init(pod, "--cleanup")  # auto finds the backend that holds our rules
    assert done.returncode == 0, done.stderr
    assert _snapshot(pod, backend) == before
    again = mesh_init(pod, "--cleanup")
    assert again.returncode == 0 and "nothing to change" in again.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_dry_run_changes_nothing_and_prints_the_payloads(pod: str, backend: str) -> None:
    _add_foreign(pod, backend)
    before = _snapshot(pod, backend)
    out = _run_ok(pod, f"--iptables-backend={backend}", "--mode=tproxy", "--dry-run")
    assert _snapshot(pod, backend) == before
    assert f"# iptables-{backend}-restore --noflush (nat)" in out
    assert f"# ip6tables-{backend}-restore --noflush (mangle)" in out
    assert "# ip -4 rule add fwmark 0x53a lookup 133 priority 32760" in out
    wanted = build_ruleset(FirewallConfig(mode=Mode.TPROXY), Family.IPV4).table(Table.MANGLE).rules
    assert all(rule.render() in out for rule in wanted)


def _shim(tmp_path: Path, name: str, script: str) -> dict[str, str]:
    """A PATH whose ``name`` runs ``script`` (sh) in front of the real one."""
    shim = tmp_path / name
    shim.write_text(f"#!/bin/sh\n{script}\n")
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    return {**os.environ, "PATH": f"{tmp_path}:{os.environ.get('PATH', '/usr/sbin:/usr/bin')}"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_failing_ip6tables_restore_rolls_back_everything(pod: str, backend: str, tmp_path: Path) -> None:
    _add_foreign(pod, backend)
    before = _snapshot(pod, backend)
    env = _shim(tmp_path, f"ip6tables-{backend}-restore", 'echo "shim: ip6tables restore refused" >&2; exit 1')
    done = mesh_init(pod, "--ipv6=on", f"--iptables-backend={backend}", "--mode=tproxy", env=env)
    assert done.returncode == 1
    assert "shim: ip6tables restore refused" in done.stderr and "rolled back every change" in done.stderr
    assert "Traceback" not in done.stderr
    assert _snapshot(pod, backend) == before


@pytest.mark.parametrize("backend", BACKENDS)
def test_failing_second_table_rolls_back_the_first(pod: str, backend: str, tmp_path: Path) -> None:
    _add_foreign(pod, backend)
    _run_ok(pod, f"--iptables-backend={backend}")  # an older config is installed: rollback must bring it back
    before = _snapshot(pod, backend)
    real = f"/usr/sbin/iptables-{backend}-restore"
    script = (
        'input="$(cat)"\n'
        'case "$input" in *"*mangle"*) echo "shim: bad mangle rule" >&2; exit 2;; esac\n'
        f'printf "%s\\n" "$input" | {real} "$@"'
    )
    env = _shim(tmp_path, f"iptables-{backend}-restore", script)
    done = mesh_init(
        pod, "--ipv6=on", f"--iptables-backend={backend}", "--mode=tproxy", "--outbound-port=4140", env=env
    )
    assert done.returncode == 1
    assert "shim: bad mangle rule" in done.stderr and "rolled back every change" in done.stderr
    assert _snapshot(pod, backend) == before


def test_failing_route_step_rolls_back(pod: str) -> None:
    # IPv6 off on lo only: ip6tables works, but the kernel refuses `local default dev lo` for IPv6.
    sh("ip", "netns", "exec", pod, "sysctl", "-qw", "net.ipv6.conf.lo.disable_ipv6=1")
    _add_foreign(pod, "nft")
    before = _snapshot(pod, "nft")
    done = mesh_init(pod, "--ipv6=on", "--mode=tproxy")
    assert done.returncode == 1
    assert "ip -6 route add local default dev lo table 133 failed" in done.stderr
    assert "rolled back every change" in done.stderr
    assert _snapshot(pod, "nft") == before


def test_forcing_the_other_backend_warns_about_our_leftover_rules(pod: str) -> None:
    _run_ok(pod, "--iptables-backend=legacy")
    done = mesh_init(pod, "--ipv6=on", "--iptables-backend=nft", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "iptables-legacy also holds triomesh rules" in done.stderr
    cleaned = mesh_init(pod, "--cleanup")
    assert cleaned.returncode == 0, cleaned.stderr
    assert "(legacy;" in cleaned.stderr


def test_turning_ipv6_off_removes_the_ipv6_rules(pod: str) -> None:
    _add_foreign(pod, "nft")
    before_v6 = save(pod, "nft", "ipv6")
    _run_ok(pod, "--mode=tproxy")
    assert "triomesh/" in save(pod, "nft", "ipv6")
    done = mesh_init(pod, "--mode=tproxy", "--ipv6=off")
    assert done.returncode == 0, done.stderr
    assert save(pod, "nft", "ipv6") == before_v6
    assert _tproxy_routing_present(pod) == [True, True, False, False]
    assert _ours(pod, "nft", "ipv4") == _expected(FirewallConfig(mode=Mode.TPROXY), "ipv4")
