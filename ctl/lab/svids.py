"""The lab's mesh identities: one trust domain root per lab, one X.509-SVID per pod.

What ``meshctl ca init`` and ``meshctl ca issue`` do, run in-process by ``lab up`` and ``lab rotate``: the root
lives in ``/run/triomesh-lab/<prefix>/ca`` (0700, root only), each pod's SVID in
``/run/triomesh-lab/<prefix>/<pod>/identity``, which the pod's proxy watches (``mesh-proxy --identity``).

The proxy runs as UID 1337: every set is published owned by it (key.pem 0600), so the proxy can read a new set
the moment it is switched in.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from ctl.lab.command import LabError
from ctl.lab.state import lab_dir
from ctl.lab.topology import TRUST_DOMAIN
from identity.authority import (
    Authority,
    AuthorityError,
    create_root,
    issue_svid,
    load_root,
    publish_svid,
    save_root,
)
from identity.spiffe import parse_spiffe_id

ROOT_TTL: Final = timedelta(days=30)  # a lab lives for minutes; a month leaves room for any SVID --ttl
SVID_TTL: Final = timedelta(hours=24)  # meshctl ca issue's default
CA_DIR: Final = "ca"
IDENTITY_DIR: Final = "identity"


def ca_dir(prefix: str) -> Path:
    return lab_dir(prefix) / CA_DIR


def identity_dir(prefix: str, pod: str) -> Path:
    return lab_dir(prefix) / pod / IDENTITY_DIR


def create_ca(directory: Path) -> Authority:
    """``meshctl ca init DIR``: a fresh root for a lab (a lab never reuses an old one), readable by root only."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    authority = create_root(TRUST_DOMAIN, now=datetime.now(UTC), ttl=ROOT_TTL)
    save_root(directory, authority, force=True)
    return authority


def load_ca(directory: Path) -> Authority:
    """The root ``create_ca`` wrote; LabError when there is none (the lab runs without mTLS, or is gone)."""
    try:
        return load_root(directory)
    except AuthorityError as exc:
        raise LabError(f"no usable lab CA ({exc}); was the lab started with --no-mtls?") from None


def issue_to(authority: Authority, spiffe_id: str, directory: Path, *, owner: int, ttl: timedelta = SVID_TTL) -> str:
    """``meshctl ca issue --identity SPIFFE_ID --out DIR``, with key.pem then owned by UID ``owner`` (the proxy's).

    Returns the new serial in hex, as the proxy's /status reports it. Error handling: LabError naming the
    identity and the directory when the SVID cannot be issued or written.
    """
    try:
        svid = issue_svid(authority, parse_spiffe_id(spiffe_id), now=datetime.now(UTC), ttl=ttl)
        publish_svid(directory, svid, owner=owner)
    except AuthorityError as exc:
        raise LabError(f"cannot issue an SVID for {spiffe_id}: {exc}") from None
    except OSError as exc:
        raise LabError(f"cannot write the SVID of {spiffe_id} to {directory}: {exc.strerror or exc}") from None
    return f"{svid.cert.serial:x}"
