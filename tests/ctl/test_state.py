from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from ctl.lab import state as lab_state
from ctl.lab.command import LabError
from ctl.lab.service import lab_service
from ctl.lab.state import LabState, PodState, load_state, save_state, state_path
from ctl.lab.topology import Mode, plan


@pytest.fixture(autouse=True)
def _state_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lab_state, "STATE_ROOT", tmp_path)


def _state() -> LabState:
    pod = PodState(name="a", netns="tmct1-a", ipv4="198.18.7.11", ipv6=None, proxy_pid=10, app_pid=11, log_dir="/x")
    return LabState(
        prefix="tmct1",
        mode=Mode.TPROXY,
        ipv6=False,
        hub_netns="tmct1-hub",
        venv="/v",
        created_at=1.0,
        pods=(pod,),
    )


def test_round_trip() -> None:
    save_state(_state())
    assert load_state("tmct1") == _state()


def test_a_service_lab_keeps_its_service() -> None:
    service = lab_service(plan("tmct1", 3, ipv6=True), [2, 5])
    save_state(msgspec.structs.replace(_state(), service=service))
    loaded = load_state("tmct1")
    assert loaded is not None and loaded.service == service
    assert [(e.pod, e.weight) for e in service.endpoints] == [("b", 2), ("c", 5)]


def test_missing_state_is_none() -> None:
    assert load_state("tmct2") is None


def test_damaged_state_is_a_lab_error_that_points_at_lab_down() -> None:
    path = state_path("tmct3")
    path.parent.mkdir(parents=True)
    path.write_text('{"prefix": ')
    with pytest.raises(LabError, match=r"damaged .* `meshctl lab down` still cleans up"):
        load_state("tmct3")
