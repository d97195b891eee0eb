"""mesh-proxy flags: defaults, and every bad value exits 2 naming the flag."""

from __future__ import annotations

import pytest

from dataplane.net.addr import SockAddr
from dataplane.settings import parse_args


def test_defaults() -> None:
    s = parse_args([])
    assert s.admin == SockAddr("127.0.0.1", 15000)
    assert (s.outbound_port, s.inbound_port, s.mark) == (15001, 15006, 0x539)
    assert s.inbound_mode == "redirect"
    assert s.policy_path is None
    assert s.drain_timeout == 25.0


def test_values() -> None:
    s = parse_args(["--admin", "[::1]:9000", "--mark", "0x10", "--inbound-mode", "tproxy", "--drain-timeout", "500ms"])
    assert s.admin == SockAddr("::1", 9000)
    assert s.mark == 0x10
    assert s.inbound_mode == "tproxy"
    assert s.drain_timeout == 0.5


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--inbound-port", "0"], "--inbound-port"),
        (["--outbound-port", "70000"], "--outbound-port"),
        (["--outbound-port", "abc"], "--outbound-port"),
        (["--admin", "0.0.0.0:15000"], "--admin"),
        (["--admin", "198.18.0.1:15000"], "--admin"),
        (["--admin", "nonsense"], "--admin"),
        (["--mark", "zz"], "--mark"),
        (["--mark", "0x1ffffffff"], "--mark"),
        (["--inbound-mode", "nat"], "--inbound-mode"),
        (["--drain-timeout", "10"], "--drain-timeout"),
        (["--metrics-retain-idle", "0s"], "--metrics-retain-idle"),
        (["--metrics-retain-idle", "soon"], "--metrics-retain-idle"),
        (["--inbound-port", "15001"], "--outbound-port"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    assert info.value.code == 2
    assert flag in capsys.readouterr().err
