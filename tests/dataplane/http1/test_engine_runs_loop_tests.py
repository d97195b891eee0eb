"""Every test of the trio proxy loop (``test_proxy.py``) again, with its connections served by the epoll engine:
what the engine serves itself and what it hands over must look the same to clients and servers."""

from __future__ import annotations

import pytest

from tests.dataplane.http1 import test_proxy as loop_tests
from tests.dataplane.http1.engine_harness import engine_proxy
from tests.dataplane.http1.test_proxy import *  # noqa: F403 - collected again here, through the engine


@pytest.fixture(autouse=True)
def _through_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loop_tests, "http1_proxy", engine_proxy)
