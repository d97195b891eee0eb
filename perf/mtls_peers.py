"""The two hops of the mTLS scenarios, configured alike for triomesh and Envoy. Pure: text and JSON out.

wrk -> hop 1 (plaintext in, TLS 1.3 mTLS out) -> hop 2 (mTLS in, plaintext out) -> nginx. Each hop proves its
own SPIFFE identity with a P-256 SVID from ``meshctl ca issue`` and accepts the other only with the exact SPIFFE
ID expected there: hop 1 checks hop 2's server identity (triomesh ``outbound.meshed[].identity``, Envoy
``match_typed_subject_alt_names`` in the UpstreamTlsContext), hop 2 requires a client certificate and checks
hop 1's identity (triomesh ``inbound.mtls: strict`` plus an ``authorization`` rule naming hop 1, Envoy
``require_client_certificate`` with the same SAN match in the DownstreamTlsContext). TLS 1.3 only on both.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final, NamedTuple

from perf.peers import CONNECT_TIMEOUT, ENVOY_API, EnvoyJson, Layer

TRUST_DOMAIN: Final = "cluster.local"
CLIENT_ID: Final = f"spiffe://{TRUST_DOMAIN}/ns/bench/sa/hop1"
SERVER_ID: Final = f"spiffe://{TRUST_DOMAIN}/ns/bench/sa/hop2"
_TLS_SOCKET: Final = "envoy.transport_sockets.tls"
_TLS_V3: Final = f"{ENVOY_API}.transport_sockets.tls.v3"
# triomesh's connect timeout (default 1 s, Linkerd's) also bounds the mesh TLS handshake; Envoy's cluster has 5 s.
# A burst of 250 new connections (the idle scenario's batch) on the shared core takes longer than 1 s to shake hands.
_TIMEOUTS: Final = {"connect": CONNECT_TIMEOUT}


class Svid(NamedTuple):
    """One hop's identity: its SPIFFE ID and the directory ``meshctl ca issue`` wrote (cert, key, bundle)."""

    spiffe_id: str
    directory: Path


class MeshIdentities(NamedTuple):
    client: Svid
    """Hop 1's: the TLS client."""
    server: Svid
    """Hop 2's: the TLS server."""


def envoy_downstream_tls(own: Svid, peer_id: str) -> EnvoyJson:
    """Hop 2's listener: TLS 1.3 only, a client certificate required, chained to the bundle, with ``peer_id``."""
    context: EnvoyJson = {
        "@type": f"{_TLS_V3}.DownstreamTlsContext",
        "require_client_certificate": True,
        "common_tls_context": _common_tls_context(own, peer_id),
    }
    return {"name": _TLS_SOCKET, "typed_config": context}


def envoy_upstream_tls(own: Svid, peer_id: str) -> EnvoyJson:
    """Hop 1's cluster: TLS 1.3 only, presenting ``own``, accepting only a server that proves ``peer_id``."""
    context: EnvoyJson = {
        "@type": f"{_TLS_V3}.UpstreamTlsContext",
        "common_tls_context": _common_tls_context(own, peer_id),
    }
    return {"name": _TLS_SOCKET, "typed_config": context}


def _common_tls_context(own: Svid, peer_id: str) -> EnvoyJson:
    return {
        "tls_params": {"tls_minimum_protocol_version": "TLSv1_3", "tls_maximum_protocol_version": "TLSv1_3"},
        "tls_certificates": [
            {
                "certificate_chain": {"filename": str(own.directory / "cert.pem")},
                "private_key": {"filename": str(own.directory / "key.pem")},
            }
        ],
        "validation_context": {
            "trusted_ca": {"filename": str(own.directory / "bundle.pem")},
            "match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {"exact": peer_id}}],
        },
    }


def triomesh_client_policy(hop2_port: int, server_id: str, layer: Layer) -> str:
    """Hop 1's policy: connections to 127.0.0.1:``hop2_port`` are meshed, and hop 2 must prove ``server_id``."""
    meshed = {"cidr": "127.0.0.1/32", "ports": [hop2_port], "identity": server_id}
    policy: dict[str, object] = {"name": "bench-mtls-hop1", "timeouts": _TIMEOUTS, "outbound": {"meshed": [meshed]}}
    return _json(_opaque(policy) if layer is Layer.L4 else policy)


def triomesh_server_policy(client_id: str, layer: Layer) -> str:
    """Hop 2's policy: mesh mTLS only (``strict``), and only ``client_id`` may connect."""
    inbound = {"mtls": "strict", "authorization": [{"identities": [client_id]}]}
    policy: dict[str, object] = {"name": "bench-mtls-hop2", "timeouts": _TIMEOUTS, "inbound": inbound}
    return _json(_opaque(policy) if layer is Layer.L4 else policy)


def _opaque(policy: dict[str, object]) -> dict[str, object]:
    """As an L4 proxy: every port relayed as opaque bytes, in both directions (no detection, no HTTP)."""
    result = dict(policy)
    for direction in ("inbound", "outbound"):
        section = result.get(direction)
        result[direction] = {**(section if isinstance(section, dict) else {}), "default_protocol": "opaque"}
    return result


def _json(policy: dict[str, object]) -> str:
    return json.dumps(policy, indent=2) + "\n"
