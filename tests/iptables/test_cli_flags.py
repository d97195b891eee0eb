"""Bad flag and policy values exit 2 naming the flag, before anything is read or changed (no root needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from iptables.__main__ import build_parser, config_from_args, main
from iptables.config import Mode, PortRange


def _exit_code_and_stderr(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert isinstance(caught.value.code, int)
    return caught.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "flag", "detail"),
    [
        (["--outbound-port", "0"], "--outbound-port", "out of range"),
        (["--inbound-port", "70000"], "--inbound-port", "out of range"),
        (["--outbound-port", "abc"], "--outbound-port", "not a number"),
        (["--exclude-inbound-ports", "80,0"], "--exclude-inbound-ports", "out of range"),
        (["--exclude-outbound-ports", "8100-8000"], "--exclude-outbound-ports", "backwards"),
        (["--exclude-outbound-ports", "http"], "--exclude-outbound-ports", "not a number"),
        (["--exclude-outbound-cidrs", "10.0.0.0/33"], "--exclude-outbound-cidrs", "not a valid CIDR"),
        (["--exclude-outbound-cidrs", "10.0.0.1/8"], "--exclude-outbound-cidrs", "host bits"),
        (["--mode", "nat"], "--mode", "invalid choice"),
        (["--iptables-backend", "ebpf"], "--iptables-backend", "invalid choice"),
        (["--ipv6", "maybe"], "--ipv6", "invalid choice"),
        (["--proxy-uid", "x"], "--proxy-uid", "not a number"),
        (["--proxy-uid", "-5"], "--proxy-uid", "out of range"),
        (["--tproxy-mark", "0x539"], "--tproxy-mark", "equals the proxy mark"),
        (["--proxy-mark", "0x53a"], "--tproxy-mark", "equals the proxy mark"),
        (["--proxy-mark", "0"], "--proxy-mark", "out of range"),
        (["--tproxy-table", "255"], "--tproxy-table", "reserves"),
        (["--inbound-port", "15001"], "--inbound-port", "equals the outbound port"),
    ],
)
def test_bad_flag_exits_2_naming_the_flag(
    argv: list[str], flag: str, detail: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _exit_code_and_stderr(argv, capsys)
    assert code == 2
    assert flag in err
    assert detail in err
    assert "Traceback" not in err


def test_flags_build_the_config() -> None:
    args = build_parser().parse_args(
        [
            "--mode=tproxy",
            "--proxy-uid=2102",
            "--proxy-mark=0x100",
            "--tproxy-mark=512",
            "--tproxy-table=200",
            "--outbound-port=4140",
            "--inbound-port=4143",
            "--exclude-inbound-ports=4190,4191-4192",
            "--exclude-outbound-ports=",
            "--exclude-outbound-cidrs=10.0.0.0/8,fd00::/8",
        ]
    )
    config = config_from_args(args)
    assert config.mode is Mode.TPROXY
    assert (config.proxy_uid, config.proxy_mark, config.tproxy_mark, config.tproxy_table) == (
        2102,
        0x100,
        512,
        200,
    )
    assert (config.outbound_port, config.inbound_port) == (4140, 4143)
    assert config.exclude_inbound_ports == (
        PortRange(first=4190, last=4190),
        PortRange(first=4191, last=4192),
    )
    assert config.exclude_outbound_ports == ()
    assert config.exclude_outbound_cidrs == ("10.0.0.0/8", "fd00::/8")


def test_policy_file_adds_exclusions(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: 1\ninbound:\n  exclude_ports: [8081]\noutbound:\n  exclude_ports: [5432]\n"
        "  exclude_cidrs: [169.254.0.0/16, 'fd00::/8']\n"
    )
    config = config_from_args(build_parser().parse_args(["--policy", str(policy), "--exclude-outbound-ports=22"]))
    assert config.exclude_inbound_ports == (
        PortRange(first=15000, last=15000),
        PortRange(first=8081, last=8081),
    )
    assert config.exclude_outbound_ports == (PortRange(first=22, last=22), PortRange(first=5432, last=5432))
    assert config.exclude_outbound_cidrs == ("169.254.0.0/16", "fd00::/8")


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("outbound:\n  exclude_cidrs: [10.0.0.0/40]\n", "outbound.exclude_cidrs[0]"),
        ("inbound:\n  exclude_ports: [0]\n", "inbound.exclude_ports[0]: expected an integer from 1 to 65535"),
        ("outbound:\n  exclude_port: [1]\n", "exclude_port"),
        ("inbound: [\n", "invalid YAML at line 2"),
    ],
)
def test_bad_policy_exits_2_naming_the_field(
    tmp_path: Path, text: str, detail: str, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(text)
    code, err = _exit_code_and_stderr(["--policy", str(policy)], capsys)
    assert code == 2
    assert "--policy" in err and str(policy) in err and detail in err


def test_missing_policy_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _exit_code_and_stderr(["--policy", str(tmp_path / "nope.yaml")], capsys)
    assert code == 2
    assert "file not found" in err
