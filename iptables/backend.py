"""The iptables binaries: choosing nft or legacy, finding the save/restore tools, running them.

This module is the only one that runs iptables; ``apply`` decides what to run and rolls back.
"""

from __future__ import annotations

import enum
import logging
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from typing import Final

import msgspec

from iptables.errors import CommandError, MissingBinaryError, PrivilegeError
from iptables.rules import CHAIN_PREFIX, COMMENT_PREFIX, Family

LOG = logging.getLogger(__name__)

# Waits for the xtables lock instead of failing when another tool holds it (legacy only; nft ignores it).
LOCK_WAIT_SECONDS: Final = 10
# A bound on each iptables run; they finish in milliseconds unless the kernel or the lock is stuck.
COMMAND_TIMEOUT_SECONDS: Final = 60


class Backend(enum.Enum):
    NFT = "nft"
    LEGACY = "legacy"


class BackendChoice(enum.Enum):
    AUTO = "auto"
    NFT = "nft"
    LEGACY = "legacy"


class Tools(msgspec.Struct, frozen=True, kw_only=True):
    """The save and restore executables of one backend for one family (absolute paths)."""

    backend: Backend
    family: Family
    save: str
    restore: str

    def run_save(self) -> str:
        """``<backend>-save`` of every table (read-only: unlike ``-t TABLE``, it creates no empty tables)."""
        return _run([self.save], "")

    def run_restore(self, payload: str, *, noflush: bool) -> None:
        """One ``<backend>-restore`` transaction; ``noflush=False`` replaces the tables the payload names."""
        args = [self.restore, "--wait", str(LOCK_WAIT_SECONDS)]
        _run([*args, "--noflush"] if noflush else args, payload)


def tool_names(backend: Backend, family: Family) -> tuple[str, str]:
    prefix = "iptables" if family is Family.IPV4 else "ip6tables"
    return f"{prefix}-{backend.value}-save", f"{prefix}-{backend.value}-restore"


def find_tools(backend: Backend, family: Family) -> Tools | None:
    save, restore = (shutil.which(name) for name in tool_names(backend, family))
    if save is None or restore is None:
        return None
    return Tools(backend=backend, family=family, save=save, restore=restore)


def require_tools(backend: Backend, family: Family, why: str) -> Tools:
    tools = find_tools(backend, family)
    if tools is None:
        missing = [name for name in tool_names(backend, family) if shutil.which(name) is None]
        raise MissingBinaryError(
            f"{' and '.join(missing)} not found on PATH ({_path()}), needed for {why}; "
            "install the iptables package (Debian: apt-get install iptables)"
        )
    return tools


def _path() -> str:
    return os.environ.get("PATH", "")


# === choosing the backend ===


class Census(msgspec.Struct, frozen=True, kw_only=True):
    """How much one backend holds: its rule count, and whether any of it is ours."""

    rules: int
    triomesh: bool


def take_census(save_texts: Sequence[str]) -> Census:
    lines = [line for text in save_texts for line in text.splitlines()]
    return Census(
        rules=sum(1 for line in lines if line.startswith("-A ")),
        triomesh=any(COMMENT_PREFIX in line or line.startswith(f":{CHAIN_PREFIX}") for line in lines),
    )


def pick_backend(censuses: Mapping[Backend, Census]) -> Backend:
    """The backend already in use wins: ours first, then the one with more rules; a tie goes to nft."""
    if not censuses:
        raise ValueError("no backend to pick from")
    order = (Backend.NFT, Backend.LEGACY)
    candidates = [b for b in order if b in censuses]
    return max(candidates, key=lambda b: (censuses[b].triomesh, censuses[b].rules, b is Backend.NFT))


def choose_backend(choice: BackendChoice, families: Sequence[Family]) -> Backend:
    """Resolve ``--iptables-backend``; auto looks at what each installed backend holds in ``families``."""
    available = [b for b in Backend if find_tools(b, Family.IPV4) is not None]
    if choice is not BackendChoice.AUTO:
        forced = Backend(choice.value)
        for other in (b for b in available if b is not forced):
            census = _census(other, families)
            if census is not None and census.triomesh:
                LOG.warning(
                    "iptables-%s also holds triomesh rules; they stay until "
                    "`mesh-init --cleanup --iptables-backend=%s`",
                    other.value,
                    other.value,
                )
        return forced
    if not available:
        wanted = " or ".join(tool_names(b, Family.IPV4)[1] for b in Backend)
        raise MissingBinaryError(
            f"no iptables backend found: neither {wanted} is on PATH ({_path()}); "
            "install the iptables package (Debian: apt-get install iptables)"
        )
    if len(available) == 1:
        return available[0]
    censuses = {b: c for b in available if (c := _census(b, families)) is not None}
    if not censuses:
        raise CommandError(f"no iptables backend works here (tried {', '.join(b.value for b in available)})")
    picked = pick_backend(censuses)
    LOG.debug("backend census %s -> %s", censuses, picked.value)
    return picked


def _census(backend: Backend, families: Sequence[Family]) -> Census | None:
    """What ``backend`` holds; None when it does not work here (say, a kernel without legacy xtables)."""
    tools = [t for f in families if (t := find_tools(backend, f)) is not None]
    try:
        return take_census([t.run_save() for t in tools])
    except PrivilegeError:
        raise
    except CommandError as exc:
        LOG.debug("iptables-%s is unusable here: %s", backend.value, exc)
        return None


# === running ===


def _run(argv: list[str], stdin: str) -> str:
    LOG.debug("running %s", " ".join(argv))
    try:
        done = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, check=False, timeout=COMMAND_TIMEOUT_SECONDS
        )
    except subprocess.TimeoutExpired:
        raise CommandError(f"{argv[0]} did not finish in {COMMAND_TIMEOUT_SECONDS} s") from None
    except OSError as exc:
        raise CommandError(f"cannot run {argv[0]}: {exc.strerror}") from None
    if done.returncode != 0:
        err = done.stderr.strip() or f"exit status {done.returncode}"
        if "Permission denied" in err or "Operation not permitted" in err:
            raise PrivilegeError(f"{argv[0]}: {err}: mesh-init must run as root or with CAP_NET_ADMIN and CAP_NET_RAW")
        raise CommandError(f"{os.path.basename(argv[0])} failed: {err}")
    return done.stdout
