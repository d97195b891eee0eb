"""``meshctl status`` and the merged /status of --workers, for a proxy with --identity; old documents still decode."""

from __future__ import annotations

import msgspec

from ctl.render import render_status, to_json
from dataplane.admin.merge import merge_status
from dataplane.admin.schema import IdentityInfo, ReloadErrorInfo, StatusReport
from tests.ctl.admin_standin import NOW, sample_status

SPIFFE_ID = "spiffe://cluster.local/ns/default/sa/web"
DIRECTORY = "/var/run/triomesh/identity"


def loaded(*, valid: bool = True, problem: str | None = None, error: ReloadErrorInfo | None = None) -> IdentityInfo:
    return IdentityInfo(
        directory=DIRECTORY,
        valid=valid,
        problem=problem,
        spiffe_id=SPIFFE_ID,
        serial="5f3a9c",
        not_before=NOW - 3600.0,
        not_after=NOW + 7200.0,
        loaded_at=NOW - 3600.0,
        generation=2,
        last_reload_error=error,
    )


def with_identity(identity: IdentityInfo | None, *, ready: bool = True) -> StatusReport:
    return msgspec.structs.replace(sample_status(ready=ready), identity=identity)


def line(text: str, key: str) -> str:
    [found] = [entry for entry in text.splitlines() if entry.startswith(f"{key}:")]
    return found


def test_status_shows_the_spiffe_id_serial_and_expiry() -> None:
    text = render_status(with_identity(loaded()), now=NOW)
    assert line(text, "identity") == (
        f"identity:     {SPIFFE_ID}, serial 5f3a9c, valid until 2023-11-15 00:13:20Z (in 2h)"
    )
    assert line(text, "id reload") == "id reload:    ok"
    # Placed with the policy's reload health, before the load figures.
    keys = [entry.split(":")[0] for entry in text.splitlines()]
    assert keys.index("last reload") < keys.index("identity") < keys.index("id reload") < keys.index("connections")


def test_status_shows_the_last_identity_reload_error_like_the_policys() -> None:
    error = ReloadErrorInfo(at=NOW - 5.0, source=f"{DIRECTORY}/key.pem", message="does not match the certificate")
    text = render_status(with_identity(loaded(error=error)), now=NOW)
    assert line(text, "id reload") == (
        f"id reload:    FAILED 5.0s ago (2023-11-14 22:13:15Z) from {DIRECTORY}/key.pem: does not match the certificate"
    )


def test_status_says_why_there_is_no_valid_identity() -> None:
    problem = f"{DIRECTORY}/cert.pem: no such file"
    none = IdentityInfo(directory=DIRECTORY, valid=False, problem=problem)
    text = render_status(with_identity(none, ready=False), now=NOW, not_ready_because=f"no valid identity ({problem})")
    assert line(text, "ready") == f"ready:        no (no valid identity ({problem}))"
    assert line(text, "identity") == f"identity:     none from {DIRECTORY} ({problem})"

    expired = loaded(valid=False, problem="identity expired at 2023-11-15T00:13:20+00:00")
    text = render_status(with_identity(expired, ready=False), now=NOW + 8000.0)
    assert line(text, "identity") == (
        f"identity:     NOT VALID: {SPIFFE_ID}, serial 5f3a9c, valid until 2023-11-15 00:13:20Z "
        "(identity expired at 2023-11-15T00:13:20+00:00)"
    )


def test_without_identity_status_has_no_identity_lines() -> None:
    text = render_status(sample_status(), now=NOW)
    assert "identity" not in text and "id reload" not in text


def test_the_schema_stays_backward_compatible() -> None:
    """A document from a proxy without the identity field decodes, and a new one round-trips."""
    old = msgspec.json.encode(sample_status())
    assert b'"identity"' in old  # encoded as null by this build...
    legacy = msgspec.json.encode({k: v for k, v in msgspec.json.decode(old).items() if k != "identity"})
    assert msgspec.json.decode(legacy, type=StatusReport).identity is None  # ...and absent from an older one
    report = with_identity(loaded())
    assert msgspec.json.decode(to_json(report), type=StatusReport) == report


def test_merged_status_shows_a_worker_whose_identity_has_a_problem() -> None:
    good, bad = loaded(), loaded(valid=False, problem="identity expired at 2023-11-15T00:13:20+00:00")
    statuses = [with_identity(good), with_identity(bad, ready=False)]
    merged = merge_status(statuses, workers=2, pid=1, started_at=NOW, uptime=1.0, draining=False)
    assert merged.identity == bad and not merged.ready
    merged = merge_status([with_identity(good)] * 2, workers=2, pid=1, started_at=NOW, uptime=1.0, draining=False)
    assert merged.identity == good and merged.ready
