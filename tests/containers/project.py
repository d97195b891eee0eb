"""What pyproject.toml promises the image: its version, console scripts and packages."""

from __future__ import annotations

import tomllib
from typing import Any

from tests.containers.manifests import REPO_ROOT

ENTRY_POINTS = frozenset({"mesh-init", "mesh-proxy", "meshctl"})  # the three roles of the one image


def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def scripts() -> dict[str, str]:
    found: dict[str, str] = pyproject()["project"]["scripts"]
    return found


def packages() -> list[str]:
    """Top-level import packages the wheel ships (setuptools find include patterns, without the ``*``)."""
    patterns: list[str] = pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    return [p.rstrip("*") for p in patterns]
