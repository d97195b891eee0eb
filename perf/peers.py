"""Configuration of every proxy under test, rendered per run for the ports chosen then. Pure: text in, text out.

Every peer runs ONE worker (Envoy ``--concurrency 1``, nginx ``worker_processes 1``, HAProxy ``nbthread 1``), so
the comparison is per core, with keep-alive upstream connections, no access logs, and connection limits raised on
purpose above what the idle scenario opens (Envoy's clusters stop at 1,024 connections by default).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from typing import Final

from dataplane.net.addr import SockAddr

# Above the idle scenario's connection count (bounded by the 20,000-descriptor hard limit: 2 per proxied pair).
MAX_CONNECTIONS: Final = 30_000
HAPROXY_SPARE_DESCRIPTORS: Final = 100  # listeners, logs, the master socket
CONNECT_TIMEOUT: Final = "5s"  # Envoy's cluster connect_timeout; triomesh's mTLS hops get the same
NGINX_STREAM_MODULE: Final = "/usr/lib/nginx/modules/ngx_stream_module.so"  # Debian's libnginx-mod-stream
ENVOY_API: Final = "type.googleapis.com/envoy.extensions"
# The upstream's answer to every request: small and fixed, so the proxy's cost dominates.
BODY: Final = "triomesh perf: a small fixed body of 64 bytes for every request.\n"
STATUS_PATH: Final = "/nginx-status"


class Layer(enum.Enum):
    """How a peer proxies: as an HTTP reverse proxy, or as a byte relay."""

    L7 = "L7"
    L4 = "L4"


def nginx_upstream(run_dir: str, http1: SockAddr, h2c: SockAddr | None, *, workers: int = 1) -> str:
    """The upstream server for every HTTP scenario: HTTP/1.1 keep-alive on ``http1``, h2c (prior knowledge)
    on ``h2c`` (None: none), one worker (unless told otherwise), the fixed body. Timeouts are long so idle
    connections stay open while measured. ``STATUS_PATH`` answers nginx's own request count (``stub_status``):
    the service scenarios read it from each endpoint to see how the proxy split the load."""
    h2c_listen = "" if h2c is None else f"\n        listen {h2c} http2 backlog=4096;"
    return f"""\
worker_processes {workers};
daemon off;
pid {run_dir}/nginx.pid;
error_log {run_dir}/error.log warn;
events {{ worker_connections {MAX_CONNECTIONS}; }}
http {{
    access_log off;
    {_nginx_temp_paths(run_dir)}
    default_type text/plain;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
    client_header_timeout 600s;
    server {{
        listen {http1} backlog=4096;{h2c_listen}
        location / {{ return 200 "{BODY.rstrip()}\\n"; }}
        location = {STATUS_PATH} {{ stub_status; }}
    }}
}}
"""


def nginx_proxy(run_dir: str, listen: SockAddr, upstream: SockAddr, layer: Layer, *, h2c: bool = False) -> str:
    """nginx as the proxy under test: ``proxy_pass`` with upstream keep-alive (L7), or ``stream`` (L4).

    nginx answers h2c only on a listener marked ``http2`` (which then speaks nothing else), hence ``h2c``.
    """
    head = f"""\
worker_processes 1;
daemon off;
pid {run_dir}/nginx.pid;
error_log {run_dir}/error.log warn;
events {{ worker_connections {MAX_CONNECTIONS}; }}
"""
    if layer is Layer.L4:
        return f"""\
load_module {NGINX_STREAM_MODULE};
{head}stream {{
    server {{
        listen {listen} backlog=4096;
        proxy_pass {upstream};
        proxy_timeout 600s;
    }}
}}
"""
    http2 = " http2" if h2c else ""
    return f"""\
{head}http {{
    access_log off;
    {_nginx_temp_paths(run_dir)}
    keepalive_requests 100000000;
    keepalive_timeout 600s;
    upstream backend {{
        server {upstream};
        keepalive 128;
        keepalive_requests 100000000;
    }}
    server {{
        listen {listen}{http2} backlog=4096;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering on;
        }}
    }}
}}
"""


def _nginx_temp_paths(run_dir: str) -> str:
    # Debian's defaults live under /var/lib/nginx, which a fresh machine may not have; keep everything in run_dir.
    return " ".join(
        f"{name}_temp_path {run_dir}/{name};" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )


def haproxy(listen: SockAddr, upstream: SockAddr, layer: Layer, descriptor_limit: int) -> str:
    """HAProxy in ``mode http`` (keep-alive both sides; h2c prior knowledge is detected on the same bind) or
    ``mode tcp``. HAProxy refuses to start when ``maxconn`` needs more descriptors than it may open (two per
    proxied connection), so ``maxconn`` is derived from the limit."""
    maxconn = min(MAX_CONNECTIONS, (descriptor_limit - HAPROXY_SPARE_DESCRIPTORS) // 2)
    mode = "http" if layer is Layer.L7 else "tcp"
    http_only = "    option http-keep-alive\n    http-reuse always\n" if layer is Layer.L7 else ""
    return f"""\
global
    nbthread 1
    maxconn {maxconn}
    log stderr format raw local0 err

defaults
    mode {mode}
    maxconn {maxconn}
    timeout connect 5s
    timeout client 600s
    timeout server 600s
{http_only}
frontend bench
    bind {listen}
    default_backend upstream

backend upstream
    server up {upstream}
"""


EnvoyJson = dict[str, object]


def envoy(
    listen: SockAddr,
    upstream: SockAddr,
    admin: SockAddr,
    layer: Layer,
    *,
    downstream_tls: EnvoyJson | None = None,
    upstream_tls: EnvoyJson | None = None,
) -> str:
    """Envoy with one static listener and one STATIC cluster: ``http_connection_manager`` with ``codec_type:
    AUTO`` (HTTP/1.1 and h2c on one port), or the ``tcp_proxy`` filter. JSON, which Envoy reads as YAML.

    ``downstream_tls`` / ``upstream_tls``: a TLS ``transport_socket`` for the listener / the cluster (the hops of
    the mTLS scenarios, perf/mtls_peers.py)."""
    config = envoy_config(listen, [upstream], admin, layer, downstream_tls=downstream_tls, upstream_tls=upstream_tls)
    return envoy_text(config)


def envoy_text(config: EnvoyJson) -> str:
    return json.dumps(config, indent=2) + "\n"


def envoy_config(
    listen: SockAddr,
    upstreams: Sequence[SockAddr],
    admin: SockAddr,
    layer: Layer,
    *,
    downstream_tls: EnvoyJson | None = None,
    upstream_tls: EnvoyJson | None = None,
    route_options: EnvoyJson | None = None,
    cluster_options: EnvoyJson | None = None,
) -> EnvoyJson:
    """The structure ``envoy`` renders, its cluster holding every address of ``upstreams``; ``route_options`` and
    ``cluster_options`` are added to the (L7) route's action and to the cluster (the service scenarios' retries,
    balancer and outlier detection, perf/service_peers.py)."""
    network_filter: EnvoyJson
    if layer is Layer.L7:
        network_filter = {
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": f"{ENVOY_API}.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "bench",
                "codec_type": "AUTO",
                "route_config": {
                    "virtual_hosts": [
                        {
                            "name": "all",
                            "domains": ["*"],
                            "routes": [
                                {"match": {"prefix": "/"}, "route": {"cluster": "upstream", **(route_options or {})}}
                            ],
                        }
                    ]
                },
                "http_filters": [
                    {
                        "name": "envoy.filters.http.router",
                        "typed_config": {"@type": f"{ENVOY_API}.filters.http.router.v3.Router"},
                    }
                ],
            },
        }
    else:
        network_filter = {
            "name": "envoy.filters.network.tcp_proxy",
            "typed_config": {
                "@type": f"{ENVOY_API}.filters.network.tcp_proxy.v3.TcpProxy",
                "stat_prefix": "bench",
                "cluster": "upstream",
            },
        }
    limits = {"max_connections": MAX_CONNECTIONS, "max_pending_requests": MAX_CONNECTIONS}
    chain: EnvoyJson = {"filters": [network_filter]}
    cluster: EnvoyJson = {
        "name": "upstream",
        "type": "STATIC",
        "connect_timeout": CONNECT_TIMEOUT,
        "circuit_breakers": {"thresholds": [limits | {"max_requests": MAX_CONNECTIONS}]},
        "load_assignment": {
            "cluster_name": "upstream",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _envoy_address(up)}} for up in upstreams]}],
        },
    }
    cluster |= cluster_options or {}
    if downstream_tls is not None:
        chain["transport_socket"] = downstream_tls
    if upstream_tls is not None:
        cluster["transport_socket"] = upstream_tls
    config: EnvoyJson = {
        "admin": {"address": _envoy_address(admin)},
        "static_resources": {
            "listeners": [{"name": "bench", "address": _envoy_address(listen), "filter_chains": [chain]}],
            "clusters": [cluster],
        },
    }
    return config


def _envoy_address(addr: SockAddr) -> dict[str, dict[str, str | int]]:
    return {"socket_address": {"address": addr.ip, "port_value": addr.port}}
