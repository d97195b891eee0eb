"""The mTLS two-hop configurations: identities issued by meshctl, Envoy's hops accepted by ``envoy --mode
validate``, triomesh's policies decoded by the policy loader, each with the TLS and identity settings the
scenarios promise (TLS 1.3 only, a client certificate required, the peer's exact SPIFFE ID)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import trio

from dataplane.net.addr import SockAddr
from perf import mtls_peers, peers
from perf.mesh_identities import provision
from perf.mtls_peers import CLIENT_ID, SERVER_ID, MeshIdentities
from perf.peers import Layer
from policy.duration import Duration
from policy.load import decode_policy
from policy.model import MtlsMode, Protocol
from tests.perf.conftest import envoy_validates

LISTEN = SockAddr("127.0.0.1", 28011)
HOP2 = SockAddr("127.0.0.1", 28012)
UPSTREAM = SockAddr("127.0.0.1", 28013)
ADMIN = SockAddr("127.0.0.1", 28014)


@pytest.fixture(scope="module")
def identities(tmp_path_factory: pytest.TempPathFactory) -> MeshIdentities:
    return trio.run(provision, tmp_path_factory.mktemp("identities"))


def test_identities_are_issued_by_meshctl(identities: MeshIdentities) -> None:
    assert (identities.client.spiffe_id, identities.server.spiffe_id) == (CLIENT_ID, SERVER_ID)
    for svid in identities:
        assert {p.name for p in svid.directory.iterdir() if not p.name.startswith("..")} == {
            "cert.pem",
            "key.pem",
            "bundle.pem",
        }
        text = subprocess.run(
            ["openssl", "x509", "-in", str(svid.directory / "cert.pem"), "-noout", "-text"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert f"URI:{svid.spiffe_id}" in text
        assert "prime256v1" in text


def _validate(tmp_path: Path, name: str, text: str) -> None:
    envoy_validates(tmp_path / name, text)


def _tls_context(transport_socket: object) -> dict[str, object]:
    assert isinstance(transport_socket, dict)
    assert transport_socket["name"] == "envoy.transport_sockets.tls"
    context = transport_socket["typed_config"]
    assert isinstance(context, dict)
    return context


def _assert_mtls_common(context: dict[str, object], own: Path, peer_id: str) -> None:
    common = context["common_tls_context"]
    assert isinstance(common, dict)
    params = {"tls_minimum_protocol_version": "TLSv1_3", "tls_maximum_protocol_version": "TLSv1_3"}
    assert common["tls_params"] == params
    assert common["tls_certificates"] == [
        {"certificate_chain": {"filename": str(own / "cert.pem")}, "private_key": {"filename": str(own / "key.pem")}}
    ]
    assert common["validation_context"] == {
        "trusted_ca": {"filename": str(own / "bundle.pem")},
        "match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {"exact": peer_id}}],
    }


@pytest.mark.parametrize("layer", [Layer.L7, Layer.L4])
def test_envoy_hop2_requires_hop1s_client_certificate(tmp_path: Path, identities: MeshIdentities, layer: Layer) -> None:
    tls = mtls_peers.envoy_downstream_tls(identities.server, identities.client.spiffe_id)
    text = peers.envoy(HOP2, UPSTREAM, ADMIN, layer, downstream_tls=tls)
    config = json.loads(text)
    listener = config["static_resources"]["listeners"][0]
    context = _tls_context(listener["filter_chains"][0]["transport_socket"])
    assert str(context["@type"]).endswith("DownstreamTlsContext")
    assert context["require_client_certificate"] is True
    _assert_mtls_common(context, identities.server.directory, CLIENT_ID)
    assert "transport_socket" not in config["static_resources"]["clusters"][0]  # plaintext to the upstream
    _validate(tmp_path, "hop2.yaml", text)


@pytest.mark.parametrize("layer", [Layer.L7, Layer.L4])
def test_envoy_hop1_accepts_only_hop2s_identity(tmp_path: Path, identities: MeshIdentities, layer: Layer) -> None:
    tls = mtls_peers.envoy_upstream_tls(identities.client, identities.server.spiffe_id)
    text = peers.envoy(LISTEN, HOP2, ADMIN, layer, upstream_tls=tls)
    config = json.loads(text)
    cluster = config["static_resources"]["clusters"][0]
    context = _tls_context(cluster["transport_socket"])
    assert str(context["@type"]).endswith("UpstreamTlsContext")
    _assert_mtls_common(context, identities.client.directory, SERVER_ID)
    assert "transport_socket" not in config["static_resources"]["listeners"][0]["filter_chains"][0]
    _validate(tmp_path, "hop1.yaml", text)


@pytest.mark.parametrize("layer", [Layer.L7, Layer.L4])
def test_triomesh_hop1_policy_meshes_hop2(layer: Layer) -> None:
    text = mtls_peers.triomesh_client_policy(HOP2.port, SERVER_ID, layer)
    policy = decode_policy(text.encode(), "json", source="hop1.json")
    (meshed,) = policy.outbound.meshed
    assert (str(meshed.cidr), meshed.ports, meshed.identity) == ("127.0.0.1/32", (HOP2.port,), SERVER_ID)
    assert policy.timeouts.connect == Duration(5.0)  # Envoy's cluster connect_timeout; it bounds the handshake too
    opaque = layer is Layer.L4
    assert (policy.outbound.default_protocol is Protocol.OPAQUE) is opaque
    assert (policy.inbound.default_protocol is Protocol.OPAQUE) is opaque


@pytest.mark.parametrize("layer", [Layer.L7, Layer.L4])
def test_triomesh_hop2_policy_is_strict_and_admits_only_hop1(layer: Layer) -> None:
    text = mtls_peers.triomesh_server_policy(CLIENT_ID, layer)
    policy = decode_policy(text.encode(), "json", source="hop2.json")
    assert policy.inbound.mtls is MtlsMode.STRICT
    assert policy.inbound.authorization is not None
    (rule,) = policy.inbound.authorization
    assert rule.identities == (CLIENT_ID,)
    assert (policy.inbound.default_protocol is Protocol.OPAQUE) is (layer is Layer.L4)
    assert policy.outbound.meshed == ()
    assert policy.timeouts.connect == Duration(5.0)
