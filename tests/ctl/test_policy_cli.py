from __future__ import annotations

import json
from pathlib import Path

import pytest

from ctl.__main__ import main

GOOD = """\
version: 1
name: web-frontend
timeouts:
  connect: 2s
inbound:
  ports:
    - port: 8080
      protocol: detect
outbound:
  exclude_cidrs: [169.254.169.254/32]
"""

BAD = """\
version: 1
name: broken
timeouts:
  connect: soon
inbound:
  ports:
    - port: 0
outbound:
  exclude_ports: [70000]
"""


def test_valid_bundle_is_one_line_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "policy.yaml"
    bundle.write_text(GOOD)
    # Imported here so the module still collects (its other tests run) before the policy branch is merged.
    from policy.load import load_policy_file, policy_version

    version = policy_version(load_policy_file(bundle))
    assert main(["policy", "validate", str(bundle)]) == 0
    assert capsys.readouterr().out == f"{bundle}: valid (name 'web-frontend', version {version})\n"


def test_invalid_bundle_lists_every_problem_with_its_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "policy.yaml"
    bundle.write_text(BAD)
    assert main(["policy", "validate", str(bundle)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{bundle}: invalid policy, 3 problem(s):"
    paths = sorted(line.split(":")[0].strip() for line in lines[1:])
    assert paths == ["inbound.ports[0].port", "outbound.exclude_ports[0]", "timeouts.connect"]


def test_missing_file_is_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["policy", "validate", str(missing)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"{missing}: invalid policy, 1 problem(s):\n") and "not found" in out


def test_schema_is_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert "timeouts" in schema["$defs"]["Policy"]["properties"]
