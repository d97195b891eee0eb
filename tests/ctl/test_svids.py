"""The lab's identities: a root CA readable by root only, and per-pod SVIDs (what `meshctl ca init/issue` make)
whose key the proxy's UID owns, re-issued in place on rotation."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ctl.lab.command import LabError
from ctl.lab.svids import create_ca, issue_to, load_ca
from ctl.lab.topology import pod_spiffe_id
from identity.load import load_identity


def test_an_svid_per_pod_with_the_key_owned_by_the_proxy_uid_and_rotation_in_place(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    authority = create_ca(ca)
    assert ca.stat().st_mode & 0o777 == 0o700
    assert load_ca(ca).cert == authority.cert
    identity = tmp_path / "a" / "identity"
    spiffe_id = pod_spiffe_id("tlmsv", "a")
    owner = os.getuid()  # chown to another UID needs root; the lab passes 1337
    first = issue_to(authority, spiffe_id, identity, owner=owner)
    loaded = load_identity(identity, now=datetime.now(UTC))
    assert (str(loaded.spiffe_id), f"{loaded.serial:x}") == (spiffe_id, first)
    key = (identity / "key.pem").resolve()
    assert (key.stat().st_uid, key.stat().st_mode & 0o777) == (owner, 0o600)
    second = issue_to(authority, spiffe_id, identity, owner=owner)
    assert second != first
    assert f"{load_identity(identity, now=datetime.now(UTC)).serial:x}" == second


def test_errors_name_what_is_missing_or_wrong(tmp_path: Path) -> None:
    with pytest.raises(LabError, match=r"no usable lab CA.*--no-mtls"):
        load_ca(tmp_path / "nothing")
    authority = create_ca(tmp_path / "ca")
    with pytest.raises(LabError, match=re.escape("spiffe://other.domain/ns/x/sa/y")):
        issue_to(authority, "spiffe://other.domain/ns/x/sa/y", tmp_path / "id", owner=os.getuid())
