"""The lab's mesh identities: one trust domain root per lab, one X.509-SVID per pod.

What ``meshctl ca init`` and ``meshctl ca issue`` do, run in-process by ``lab up`` and ``lab rotate``: the root
lives in ``/run/triomesh-lab/<prefix>/ca`` (0700, root only), each pod's SVID in
``/run/triomesh-lab/<prefix>/<pod>/identity``, which the pod's proxy watches (``mesh-proxy --identity``).

The proxy runs as UID 1337 and ``publish_svid`` writes key.pem 0600 as the caller (root), so the new key is
chowned right after each publish. A proxy that polls in between reads a permission error; it acts on a
directory state only when two polls half a second apart agree, and the next one already sees the readable key,
so that read is never reported: the rotation just lands one poll later.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from ctl.lab.command import LabError
from ctl.lab.state import lab_dir
from ctl.lab.topology import TRUST_DOMAIN, pod_spiffe_id
from identity.authority import (
    KEY_FILE,
    Authority,
    AuthorityError,
    create_root,
    issue_svid,
    load_root,
    publish_svid,
    save_root,
)
from identity.files import DATA_LINK
from identity.spiffe import parse_spiffe_id

ROOT_TTL: Final = timedelta(days=30)  # a lab lives for minutes; a month leaves room for any SVID --ttl
SVID_TTL: Final = timedelta(hours=24)  # meshctl ca issue's default
CA_DIR: Final = "ca"
IDENTITY_DIR: Final = "identity"


def ca_dir(prefix: str) -> Path:
    return lab_dir(prefix) / CA_DIR


def identity_dir(prefix: str, pod: str) -> Path:
    return lab_dir(prefix) / pod / IDENTITY_DIR


def create_ca(prefix: str) -> Authority:
    """``meshctl ca init <lab>/ca``: a fresh root for the lab (a lab never reuses an old one)."""
    directory = ca_dir(prefix)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    authority = create_root(TRUST_DOMAIN, now=datetime.now(UTC), ttl=ROOT_TTL)
    save_root(directory, authority, force=True)
    return authority


def load_ca(prefix: str) -> Authority:
    """The root ``create_ca`` wrote; LabError when the lab has none (it runs without mTLS, or is gone)."""
    try:
        return load_root(ca_dir(prefix))
    except AuthorityError as exc:
        raise LabError(f"lab {prefix} has no usable CA ({exc}); was it started with --no-mtls?") from None


def issue_pod_svid(
    authority: Authority, prefix: str, pod: str, *, owner: int, ttl: timedelta = SVID_TTL
) -> tuple[str, str]:
    """``meshctl ca issue`` for the pod into its identity directory, key readable by ``owner`` (the proxy's UID).

    Returns (SPIFFE ID, serial in hex, as the proxy's /status reports it). Error handling: LabError naming the
    pod when the SVID cannot be issued or written.
    """
    spiffe_id = pod_spiffe_id(prefix, pod)
    directory = identity_dir(prefix, pod)
    try:
        svid = issue_svid(authority, parse_spiffe_id(spiffe_id), now=datetime.now(UTC), ttl=ttl)
        publish_svid(directory, svid)
        # The key of the set just published, not key.pem's symlink (chown follows it, but say which one).
        key = directory / os.readlink(directory / DATA_LINK) / KEY_FILE
        os.chown(key, owner, owner)
    except AuthorityError as exc:
        raise LabError(f"cannot issue an SVID for pod {pod} ({spiffe_id}): {exc}") from None
    except OSError as exc:
        raise LabError(f"cannot write pod {pod}'s SVID to {directory}: {exc.strerror or exc}") from None
    return spiffe_id, f"{svid.cert.serial:x}"
