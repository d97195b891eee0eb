"""mesh-init's runtime failures exit 1 with a message saying what is missing, and change nothing."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .netns import mesh_init, netns, save

pytestmark = [pytest.mark.netns, pytest.mark.usefixtures("require_netns")]


@pytest.fixture
def pod() -> Iterator[str]:
    with netns() as name:
        yield name


def _path_with(tmp_path: Path, *tools: str) -> dict[str, str]:
    """An environment whose PATH holds only ``tools`` (linked to the real ones)."""
    for tool in tools:
        real = shutil.which(tool)
        assert real is not None, tool
        (tmp_path / tool).symlink_to(real)
    return {**os.environ, "PATH": str(tmp_path)}


def test_no_iptables_on_path_names_the_missing_binaries(pod: str, tmp_path: Path) -> None:
    done = mesh_init(pod, env=_path_with(tmp_path))
    assert done.returncode == 1
    assert "iptables-nft-restore" in done.stderr and "iptables-legacy-restore" in done.stderr
    assert "Traceback" not in done.stderr


def test_forced_backend_without_its_binaries_names_them(pod: str, tmp_path: Path) -> None:
    env = _path_with(tmp_path, "iptables-nft-save", "iptables-nft-restore")
    done = mesh_init(pod, "--iptables-backend=legacy", env=env)
    assert done.returncode == 1
    assert "iptables-legacy-save and iptables-legacy-restore not found on PATH" in done.stderr


def test_ipv6_on_without_ip6tables_names_it_and_changes_nothing(pod: str, tmp_path: Path) -> None:
    before = save(pod, "nft")
    env = _path_with(tmp_path, "iptables-nft-save", "iptables-nft-restore")
    done = mesh_init(pod, "--ipv6=on", env=env)
    assert done.returncode == 1
    assert "ip6tables-nft-save and ip6tables-nft-restore not found on PATH" in done.stderr
    assert save(pod, "nft") == before


def test_ipv6_auto_without_ip6tables_installs_ipv4_only(pod: str, tmp_path: Path) -> None:
    env = _path_with(tmp_path, "iptables-nft-save", "iptables-nft-restore")
    done = mesh_init(pod, env=env)
    assert done.returncode == 0, done.stderr
    assert "(nft; ipv4)" in done.stderr
    assert "triomesh/" in save(pod, "nft", "ipv4") and "triomesh/" not in save(pod, "nft", "ipv6")


def test_without_privilege_says_root_or_cap_net_admin_is_needed(pod: str) -> None:
    before = save(pod, "nft")
    done = mesh_init(pod, as_uid=1337)
    assert done.returncode == 1, done.stderr
    assert "must run as root or with CAP_NET_ADMIN" in done.stderr
    assert "Traceback" not in done.stderr
    assert save(pod, "nft") == before
