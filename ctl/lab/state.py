"""The lab's state file, /run/triomesh-lab/<prefix>/state.json: what ``lab up`` built, for status and exec.

``lab down`` reads it when present but never needs it: it finds everything by prefix and process marker.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import msgspec

from ctl.lab.command import LabError
from ctl.lab.service import LabService
from ctl.lab.topology import Mode, validate_prefix

STATE_ROOT: Final = Path("/run/triomesh-lab")  # tmpfs: a reboot, which also drops the namespaces, clears it


class PodState(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    netns: str
    ipv4: str
    ipv6: str | None
    proxy_pid: int | None = None
    app_pid: int | None = None
    log_dir: str
    spiffe_id: str | None = None
    """The pod's mesh identity; None in a lab without mTLS."""


class LabState(msgspec.Struct, frozen=True, kw_only=True):
    prefix: str
    mode: Mode
    ipv6: bool
    mtls: bool = False
    """Strict mTLS between pods with a lab CA (``lab up`` default); False in older state files."""
    hub_netns: str
    venv: str
    created_at: float
    pods: tuple[PodState, ...]
    service: LabService | None = None
    """Pod a's service over the other pods (``lab up --service``); None without."""


def lab_dir(prefix: str) -> Path:
    return STATE_ROOT / validate_prefix(prefix)


def state_path(prefix: str) -> Path:
    return lab_dir(prefix) / "state.json"


def save_state(state: LabState) -> None:
    """Written to a temporary file and renamed, so a crash never leaves half a state file."""
    path = state_path(state.prefix)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_bytes(msgspec.json.format(msgspec.json.encode(state), indent=2))
    os.replace(partial, path)


def load_state(prefix: str) -> LabState | None:
    """The recorded state, or None when there is none. A damaged file raises ``LabError``."""
    path = state_path(prefix)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LabError(f"cannot read lab state {path}: {exc.strerror}") from None
    try:
        return msgspec.json.decode(raw, type=LabState)
    except msgspec.DecodeError as exc:
        raise LabError(f"lab state {path} is damaged ({exc}); `meshctl lab down` still cleans up") from None
