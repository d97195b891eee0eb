"""`meshctl lab up` gives every pod its own identity by default (a lab root CA, an SVID per pod whose key only the
proxy's UID reads, a strict policy), `lab status` and `meshctl status` show it, `lab rotate` replaces every SVID
and the proxies serve the new serials; `--no-mtls` builds the plaintext lab, which has nothing to rotate."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial

import msgspec
import pytest
import trio

from ctl.__main__ import main
from ctl.lab.lab import PROXY_UID
from ctl.lab.state import lab_dir
from ctl.lab.status import LabStatus
from ctl.lab.teardown import teardown
from identity.load import load_identity
from policy.load import load_policy_file
from policy.model import MtlsMode

pytestmark = [pytest.mark.netns, pytest.mark.usefixtures("require_netns")]

UP_TIMEOUT = 60


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = f"tlmid{secrets.token_hex(3)}"
    try:
        yield name
    finally:
        await teardown(name)


async def _meshctl(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = await trio.to_thread.run_sync(partial(main, list(argv)))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def _status(capsys: pytest.CaptureFixture[str], prefix: str) -> LabStatus:
    code, out, _ = await _meshctl(capsys, "lab", "status", "--prefix", prefix, "--json")
    assert code == 0, out
    return msgspec.json.decode(out, type=LabStatus)


async def test_every_pod_gets_an_identity_strict_policy_and_rotation(
    prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(UP_TIMEOUT):
        code, out, err = await _meshctl(capsys, "lab", "up", "--prefix", prefix, "--no-ipv6")
    assert code == 0, err
    assert f"lab {prefix}: mode redirect, 3 pod(s), strict mTLS between pods" in out
    ids = {pod: f"spiffe://cluster.local/ns/{prefix}/sa/{pod}" for pod in "abc"}
    for spiffe_id in ids.values():
        assert spiffe_id in out

    root = lab_dir(prefix)
    assert (root / "ca").stat().st_mode & 0o777 == 0o700
    status = await _status(capsys, prefix)
    assert status.mtls
    for pod in status.pods:
        directory = root / pod.name / "identity"
        key = (directory / "key.pem").resolve()
        assert (key.stat().st_uid, key.stat().st_mode & 0o777) == (PROXY_UID, 0o600)
        identity = load_identity(directory, now=datetime.now(UTC))
        assert str(identity.spiffe_id) == ids[pod.name] == pod.spiffe_id
        assert pod.serial == f"{identity.serial:x}"
        policy = load_policy_file(root / pod.name / "policy.yaml")
        assert policy.inbound.mtls is MtlsMode.STRICT
        assert {m.identity for m in policy.outbound.meshed} == {v for k, v in ids.items() if k != pod.name}

    code, out, _ = await _meshctl(capsys, "--pod", "a", "--lab-prefix", prefix, "status")
    assert code == 0 and f"identity:     {ids['a']}, serial {status.pods[0].serial}, valid until" in out

    with trio.fail_after(30):
        code, out, err = await _meshctl(capsys, "lab", "rotate", "--prefix", prefix)
    assert code == 0, err
    rotated = await _status(capsys, prefix)
    for before, after in zip(status.pods, rotated.pods, strict=True):
        assert after.serial is not None and after.serial != before.serial
        line = f"pod {after.name}: {ids[after.name]} serial {before.serial} -> {after.serial} (proxy took it in "
        assert line in out, out
    with trio.fail_after(30):
        code, out, err = await _meshctl(capsys, "lab", "rotate", "--prefix", prefix, "b")
    assert code == 0 and out.startswith("pod b: ") and out.count("\n") == 1, (out, err)
    code, _, err = await _meshctl(capsys, "lab", "rotate", "--prefix", prefix, "z")
    assert code == 1 and f"lab {prefix} has no pod z (pods: a, b, c)" in err


async def test_no_mtls_builds_the_plaintext_lab(prefix: str, capsys: pytest.CaptureFixture[str]) -> None:
    with trio.fail_after(UP_TIMEOUT):
        code, out, err = await _meshctl(capsys, "lab", "up", "--prefix", prefix, "--pods", "2", "--no-mtls")
    assert code == 0, err
    assert f"lab {prefix}: mode redirect, 2 pod(s), plaintext between pods (--no-mtls)" in out
    status = await _status(capsys, prefix)
    assert not status.mtls and [(p.spiffe_id, p.serial) for p in status.pods] == [(None, None)] * 2
    assert not (lab_dir(prefix) / "ca").exists()
    policy = load_policy_file(lab_dir(prefix) / "a" / "policy.yaml")
    assert policy.inbound.mtls is MtlsMode.PERMISSIVE and policy.outbound.meshed == ()
    code, _, err = await _meshctl(capsys, "lab", "rotate", "--prefix", prefix)
    assert code == 1 and "runs without mTLS (--no-mtls)" in err
