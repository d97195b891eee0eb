"""The lab benchmark's nginx must not share a port with the lab's demo app: the app would answer in its place
(once it did: the http1 scenario measured the demo app and nginx never bound its ports)."""

from __future__ import annotations

from ctl.lab.topology import APP_PORT, HTTP_PORT
from perf.lab import H2C_PORT, HTTP1_PORT


def test_the_benchmark_ports_are_not_the_demo_apps() -> None:
    assert not {HTTP1_PORT, H2C_PORT} & {APP_PORT, HTTP_PORT}
