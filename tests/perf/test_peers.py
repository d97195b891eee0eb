"""Every rendered configuration is accepted by the real peer's own configuration check."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from dataplane.net.addr import SockAddr
from perf import peers
from perf.peers import Layer
from tests.perf.conftest import need

LISTEN = SockAddr("127.0.0.1", 28001)
UPSTREAM = SockAddr("127.0.0.1", 28002)
ADMIN = SockAddr("127.0.0.1", 28003)


def _check(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@pytest.mark.parametrize(("layer", "h2c"), [(Layer.L7, False), (Layer.L7, True), (Layer.L4, False)])
def test_nginx_proxy_config_is_valid(tmp_path: Path, layer: Layer, h2c: bool) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(peers.nginx_proxy(str(tmp_path), LISTEN, UPSTREAM, layer, h2c=h2c))
    out = _check([need("nginx"), "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(conf)])
    assert "test is successful" in out
    assert ("stream {" in conf.read_text()) is (layer is Layer.L4)


@pytest.mark.parametrize("h2c", [UPSTREAM, None])
def test_nginx_upstream_config_is_valid(tmp_path: Path, h2c: SockAddr | None) -> None:
    conf = tmp_path / "upstream.conf"
    conf.write_text(peers.nginx_upstream(str(tmp_path), LISTEN, h2c))
    out = _check([need("nginx"), "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(conf)])
    assert "test is successful" in out
    assert ("http2" in conf.read_text()) is (h2c is not None)
    assert f"location = {peers.STATUS_PATH} {{ stub_status; }}" in conf.read_text()


@pytest.mark.parametrize("layer", [Layer.L7, Layer.L4])
def test_haproxy_config_is_valid(tmp_path: Path, layer: Layer) -> None:
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(peers.haproxy(LISTEN, UPSTREAM, layer, descriptor_limit=20_000))
    out = _check([need("haproxy"), "-c", "-f", str(cfg)])
    assert "Configuration file is valid" in out
    assert f"mode {'http' if layer is Layer.L7 else 'tcp'}" in cfg.read_text()


def test_haproxy_maxconn_fits_the_descriptor_limit() -> None:
    # Two descriptors per proxied connection: HAProxy refuses to start when maxconn cannot be met.
    assert "maxconn 9950" in peers.haproxy(LISTEN, UPSTREAM, Layer.L4, descriptor_limit=20_000)
    assert f"maxconn {peers.MAX_CONNECTIONS}" in peers.haproxy(LISTEN, UPSTREAM, Layer.L4, descriptor_limit=1 << 20)


@pytest.mark.parametrize("layer", [Layer.L7, Layer.L4])
def test_envoy_config_is_valid(tmp_path: Path, layer: Layer) -> None:
    text = peers.envoy(LISTEN, UPSTREAM, ADMIN, layer)
    config = json.loads(text)
    cluster = config["static_resources"]["clusters"][0]
    # Envoy's default circuit breaker stops a cluster at 1,024 connections: raised on purpose.
    assert cluster["circuit_breakers"]["thresholds"][0]["max_connections"] == peers.MAX_CONNECTIONS
    path = tmp_path / "envoy.yaml"
    path.write_text(text)
    out = _check([need("envoy"), "--mode", "validate", "-c", str(path), "-l", "warning"])
    assert "OK" in out
