"""``meshctl ca init`` and ``meshctl ca issue`` through meshctl's own entry point."""

from __future__ import annotations

import os
import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ctl.__main__ import main
from identity.load import load_identity
from identity.spiffe import parse_spiffe_id
from tests.tools import need

IDENTITY = "spiffe://example.org/ns/default/sa/frontend"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        status = main(argv)
    except SystemExit as exited:
        status = int(exited.code or 0)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return status, out, err


def openssl_text(path: Path) -> str:
    command = [need("openssl"), "x509", "-in", str(path), "-noout", "-text"]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def ca_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    directory = tmp_path / "ca"
    status, out, _ = run(["ca", "init", str(directory), "--trust-domain", "example.org"], capsys)
    assert status == 0
    assert "'example.org'" in out
    return directory


def test_init_writes_a_p256_root_with_a_private_key(ca_dir: Path) -> None:
    assert stat.S_IMODE(os.stat(ca_dir / "ca.key").st_mode) == 0o600
    text = openssl_text(ca_dir / "ca.crt")
    assert "CA:TRUE" in text
    assert "Certificate Sign" in text
    assert "NIST CURVE: P-256" in text
    assert "URI:spiffe://example.org" in text


def test_init_refuses_to_overwrite_without_force(ca_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (ca_dir / "ca.crt").read_bytes()
    status, _, err = run(["ca", "init", str(ca_dir)], capsys)
    assert status == 1
    assert "ca.crt exists" in err
    assert "--force" in err
    assert (ca_dir / "ca.crt").read_bytes() == before
    status, _, _ = run(["ca", "init", str(ca_dir), "--force", "--trust-domain", "example.org"], capsys)
    assert status == 0
    assert (ca_dir / "ca.crt").read_bytes() != before


def test_issue_writes_an_svid_that_loads_and_that_openssl_verifies(
    ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "frontend"
    status, printed, _ = run(
        ["ca", "issue", "--ca", str(ca_dir), "--identity", IDENTITY, "--ttl", "24h", "--out", str(out)], capsys
    )
    assert status == 0
    assert IDENTITY in printed
    identity = load_identity(out, now=datetime.now(UTC))
    assert identity.spiffe_id == parse_spiffe_id(IDENTITY)
    lifetime = identity.not_after - datetime.now(UTC)
    assert timedelta(hours=23, minutes=59) < lifetime <= timedelta(hours=24)
    assert stat.S_IMODE(os.stat(out / "key.pem").st_mode) == 0o600
    assert (out / "bundle.pem").read_bytes() == (ca_dir / "ca.crt").read_bytes()
    verified = subprocess.run(
        [need("openssl"), "verify", "-purpose", "sslclient", "-CAfile", str(out / "bundle.pem"), str(out / "cert.pem")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
    text = openssl_text(out / "cert.pem")
    assert "CA:FALSE" in text
    assert "X509v3 Key Usage: critical\n                Digital Signature\n" in text
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in text
    assert text.count("URI:") == 1


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--identity", "spiffe://other.org/ns/a/sa/b"], "argument --identity: spiffe://other.org/ns/a/sa/b is not in"),
        (["--identity", "spiffe://Example.org/ns/a"], "argument --identity: invalid SPIFFE ID"),
        (["--identity", "spiffe://example.org:80/ns/a"], "argument --identity: invalid SPIFFE ID"),
        (["--identity", "spiffe://example.org/ns//a"], "empty path segment"),
        (["--identity", "spiffe://example.org/ns/a?x"], "a query is not allowed"),
        (["--identity", "spiffe://example.org"], "argument --identity: spiffe://example.org names a trust domain"),
        (["--ttl", "1d"], "argument --ttl: invalid duration '1d'"),
        (["--ttl", "0s"], "argument --ttl: '0s' is not a positive duration"),
        (["--ttl", "1000000h"], "argument --ttl: the SVID would outlive the CA"),
        (["--owner", "proxy"], "argument --owner: 'proxy' is not a numeric user id"),
    ],
)
def test_bad_issue_flags_exit_2_naming_the_flag(
    ca_dir: Path, tmp_path: Path, flags: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["ca", "issue", "--ca", str(ca_dir), "--out", str(tmp_path / "out"), "--identity", IDENTITY, *flags]
    status, _, err = run(argv, capsys)
    assert status == 2
    assert named in err
    assert not (tmp_path / "out").exists()


def test_owner_owns_every_file_of_the_set_from_the_start(
    ca_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The proxy (UID 1337) must be able to read a rotated key.pem the moment ..data switches to it.
    out = tmp_path / "proxy"
    for _ in range(2):  # the first set and a rotation
        status, _, _ = run(
            ["ca", "issue", "--ca", str(ca_dir), "--identity", IDENTITY, "--out", str(out), "--owner", "1337"], capsys
        )
        assert status == 0
        version = out / os.readlink(out / "..data")
        for name in ("cert.pem", "key.pem", "bundle.pem"):
            info = os.stat(version / name)
            assert (info.st_uid, info.st_gid) == (1337, 1337), name
        assert stat.S_IMODE(os.stat(version / "key.pem").st_mode) == 0o600


def test_bad_init_flags_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(["ca", "init", str(tmp_path), "--trust-domain", "Example.org"], capsys)
    assert status == 2
    assert "argument --trust-domain: invalid trust domain 'Example.org': the trust domain must be lowercase" in err


def test_a_missing_ca_exits_1_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["ca", "issue", "--ca", str(tmp_path / "nope"), "--identity", IDENTITY, "--out", str(tmp_path / "o")]
    status, _, err = run(argv, capsys)
    assert status == 1
    assert f"--ca: {tmp_path / 'nope' / 'ca.crt'}: no such file" in err
