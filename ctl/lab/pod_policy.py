"""Each lab pod's policy bundle, ``/run/triomesh-lab/<prefix>/<pod>/policy.yaml``, which its proxy watches.

With mTLS (the default) a pod's inbound side is ``strict`` and every other pod's addresses are meshed
destinations, each with that pod's exact identity (``/32`` and ``/128``): a proxy that answers for pod b with
any other identity is refused. The pod's own addresses are left out on purpose: a pod calling itself never
crosses its inbound proxy, so its outbound proxy must not originate mTLS to its own application.

The demo app's line protocol on 8080 speaks first, so with mTLS it is an outbound opaque port (Linkerd's
rule for server-speaks-first protocols between meshed pods): a meshed connection's protocol is named in its
TLS ALPN before the server can say anything, so detection could only wait for its timeout (10 s) there.

The document is built as plain data (only the fields the lab sets, so the file stays short for people to read
and edit), checked with the real policy loader, and written atomically, so the proxy's watcher never reads
half a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import msgspec

from ctl.lab.command import LabError
from ctl.lab.service import LabService, service_document
from ctl.lab.topology import APP_PORT, PodPlan, Topology, pod_spiffe_id
from identity.files import write_file
from policy.load import PolicyError, decode_policy

POLICY_FILE: Final = "policy.yaml"
_READABLE: Final = 0o644  # the proxy (UID 1337) reads it

PolicyDocument = dict[str, object]


def pod_policy(topology: Topology, pod: PodPlan, *, mtls: bool, service: LabService | None = None) -> PolicyDocument:
    """The policy ``lab up`` gives ``pod``: strict mTLS in, mTLS to every other pod out (or defaults only), and
    for the service's client pod the service (``outbound.services``, see ``ctl.lab.service``)."""
    document: PolicyDocument = {"version": 1, "name": f"lab {topology.prefix} pod {pod.name}"}
    services = (
        [service_document(topology.prefix, service, mtls=mtls)]
        if service is not None and service.client == pod.name
        else []
    )
    if not mtls:
        if services:
            document["outbound"] = {"services": services}
        return document
    meshed: list[dict[str, str]] = []
    for peer in topology.pods:
        if peer.name == pod.name:
            continue
        identity = pod_spiffe_id(topology.prefix, peer.name)
        meshed.append({"cidr": f"{peer.ipv4}/32", "identity": identity})
        if peer.ipv6 is not None:
            meshed.append({"cidr": f"{peer.ipv6}/128", "identity": identity})
    document["inbound"] = {"mtls": "strict"}
    outbound: PolicyDocument = {"ports": [{"port": APP_PORT, "protocol": "opaque"}], "meshed": meshed}
    if services:
        outbound["services"] = services
    document["outbound"] = outbound
    return document


def encode_policy_document(document: PolicyDocument, *, source: str) -> bytes:
    """The YAML of ``document``, after the proxy's own loader accepted it; LabError listing its problems."""
    data = msgspec.yaml.encode(document)
    try:
        decode_policy(data, "yaml", source=source)
    except PolicyError as exc:
        raise LabError(f"invalid lab policy: {exc}") from None
    return data


def write_policy(path: Path, document: PolicyDocument) -> None:
    """Replace ``path`` with ``document`` in one rename (the proxy applies it within a second)."""
    data = encode_policy_document(document, source=str(path))
    try:
        write_file(path, data, mode=_READABLE)
    except OSError as exc:
        raise LabError(f"cannot write the policy {path}: {exc.strerror or exc}") from None


def read_policy(path: Path) -> PolicyDocument:
    """The document at ``path`` as plain data (to change a field and ``write_policy`` it back)."""
    try:
        document = msgspec.yaml.decode(path.read_bytes(), type=PolicyDocument)
    except (OSError, msgspec.DecodeError) as exc:
        raise LabError(f"cannot read the policy {path}: {exc}") from None
    return document
