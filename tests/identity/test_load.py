"""Loading an identity directory: the good set, every refused set naming its file, and atomic publication."""

from __future__ import annotations

import os
import stat
from datetime import timedelta
from pathlib import Path

import pytest

from identity.authority import BUNDLE_FILE, CERT_FILE, KEY_FILE, publish_svid
from identity.files import DATA_LINK
from identity.load import IdentityError, load_identity
from identity.spiffe import parse_spiffe_id
from tests.identity.pki import BACKEND, FRONTEND, NOW, Pki, leaf_spec


def test_a_published_svid_loads(tmp_path: Path) -> None:
    pki = Pki()
    directory = pki.identity_dir(tmp_path / "id")
    identity = load_identity(directory, now=NOW)
    assert identity.spiffe_id == parse_spiffe_id(FRONTEND)
    assert identity.trust_domain == "example.org"
    assert identity.not_after == identity.chain[0].not_after
    assert identity.cert_path == directory / CERT_FILE
    assert stat.S_IMODE(os.stat(directory / KEY_FILE).st_mode) == 0o600
    assert identity.bundle.anchors == (pki.root.cert,)


def test_plain_files_written_by_an_operator_load_too(tmp_path: Path) -> None:
    pki = Pki()
    svid = pki.svid()
    (tmp_path / CERT_FILE).write_bytes(svid.cert.to_pem())
    (tmp_path / KEY_FILE).write_bytes(svid.key.to_pem())
    (tmp_path / BUNDLE_FILE).write_bytes(svid.bundle_pem)
    assert load_identity(tmp_path, now=NOW).spiffe_id == parse_spiffe_id(FRONTEND)


def _refused(directory: Path, name: str, words: str) -> None:
    with pytest.raises(IdentityError) as caught:
        load_identity(directory, now=NOW)
    assert caught.value.path == directory / name, caught.value
    assert words in caught.value.problem, caught.value


def test_refusals_name_the_file_and_the_problem(tmp_path: Path) -> None:
    pki = Pki()
    svid = pki.svid()
    other = pki.svid(BACKEND)
    files = {CERT_FILE: svid.cert.to_pem(), KEY_FILE: svid.key.to_pem(), BUNDLE_FILE: svid.bundle_pem}

    def write(**changes: bytes) -> None:
        for name, data in {**files, **{k.replace("_", "."): v for k, v in changes.items()}}.items():
            (tmp_path / name).write_bytes(data)

    write(key_pem=other.key.to_pem())
    _refused(tmp_path, KEY_FILE, "does not match the certificate")
    write(cert_pem=b"garbage")
    _refused(tmp_path, CERT_FILE, "no PEM certificate")
    write(key_pem=b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    _refused(tmp_path, KEY_FILE, "not an unencrypted PEM private key")
    write(bundle_pem=svid.cert.to_pem())
    _refused(tmp_path, BUNDLE_FILE, "is not a CA")
    write(bundle_pem=Pki().root.cert.to_pem())
    _refused(tmp_path, CERT_FILE, "unknown_ca")
    expired, key = pki.sign(leaf_spec(not_before=NOW - timedelta(hours=2), not_after=NOW - timedelta(hours=1)))
    write(cert_pem=expired.to_pem(), key_pem=key.to_pem())
    _refused(tmp_path, CERT_FILE, "expired")
    ca_leaf, key = pki.sign(leaf_spec(uris=(FRONTEND, BACKEND)))
    write(cert_pem=ca_leaf.to_pem(), key_pem=key.to_pem())
    _refused(tmp_path, CERT_FILE, "bad_svid")
    (tmp_path / BUNDLE_FILE).unlink()
    _refused(tmp_path, BUNDLE_FILE, "no such file")


def test_republishing_swaps_the_whole_set_and_cleans_up(tmp_path: Path) -> None:
    pki = Pki()
    directory = pki.identity_dir(tmp_path / "id")
    first = load_identity(directory, now=NOW)
    publish_svid(directory, pki.svid(BACKEND))
    second = load_identity(directory, now=NOW)
    assert second.spiffe_id == parse_spiffe_id(BACKEND)
    assert second.serial != first.serial
    versions = [entry.name for entry in directory.iterdir() if entry.name.startswith("..20")]
    assert versions == [os.readlink(directory / DATA_LINK)]
