"""Fixtures for the ctl tests: a fresh lab prefix whose leftovers are always removed."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest

from ctl.lab.teardown import teardown


@pytest.fixture
async def lab_prefix() -> AsyncIterator[str]:
    """A random ``tmct<hex>`` prefix; whatever a test leaves under it is torn down afterwards."""
    prefix = f"tmct{secrets.token_hex(3)}"
    try:
        yield prefix
    finally:
        await teardown(prefix)
