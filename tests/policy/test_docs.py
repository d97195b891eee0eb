"""The exported JSON Schema, the generated field reference and the examples stay in sync with the model."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import msgspec.inspect as mi
import pytest

from policy import reference, schema
from policy.duration import DURATION_PATTERN, Duration
from policy.field_docs import field_docs
from policy.index import PolicyIndex
from policy.load import Format, PolicyError, decode_policy, load_policy_file
from policy.model import InboundPolicy, OutboundPolicy, Policy, PortPolicy, Timeouts

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "policy.md"
SCHEMA = ROOT / "docs" / "policy.schema.json"
EXAMPLES = {fmt: ROOT / "examples" / f"policy.{fmt}" for fmt in ("yaml", "json", "toml")}
SERVICES_EXAMPLE = ROOT / "examples" / "services.yaml"
STRUCTS = (Policy, Timeouts, InboundPolicy, OutboundPolicy, PortPolicy)


def test_the_committed_json_schema_is_current() -> None:
    assert SCHEMA.read_text(encoding="utf-8") == schema.render(), (
        "docs/policy.schema.json is stale: run python -m policy.schema > docs/policy.schema.json"
    )


def test_python_m_policy_schema_prints_it() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "policy.schema"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(printed) == schema.json_schema()


def test_the_schema_describes_every_field() -> None:
    exported = schema.json_schema()
    assert exported["$ref"] == "#/$defs/Policy"
    defs = exported["$defs"]
    assert isinstance(defs, dict)
    for struct in STRUCTS:
        definition = defs[struct.__name__]
        info = mi.type_info(struct)
        assert isinstance(info, mi.StructType)
        assert list(definition["properties"]) == [field.encode_name for field in info.fields]
        assert definition["additionalProperties"] is False
        assert all(prop["description"] for prop in definition["properties"].values())
    assert defs["PortPolicy"]["required"] == ["port"]
    assert defs["Protocol"]["enum"] == ["opaque", "detect"]
    assert defs["Timeouts"]["properties"]["connect"] | {"description": "", "default": ""} == {
        "type": "string",
        "pattern": DURATION_PATTERN,
        "description": "",
        "examples": ["250ms", "10s", "5m", "1h"],
        "default": "",
    }
    assert defs["Timeouts"]["properties"]["idle"]["default"] == "1h"
    port = defs["PortPolicy"]["properties"]["port"]
    assert (port["type"], port["minimum"], port["maximum"]) == ("integer", 1, 65535)


def test_the_schema_hook_knows_only_durations() -> None:
    assert schema.schema_hook(Duration)["pattern"] == DURATION_PATTERN
    with pytest.raises(NotImplementedError):
        schema.schema_hook(int)


@pytest.mark.parametrize("struct", STRUCTS)
def test_every_model_field_is_documented(struct: type) -> None:
    info = mi.type_info(struct)
    assert isinstance(info, mi.StructType)
    docs = field_docs(struct)
    assert [field.name for field in info.fields if not docs.get(field.name)] == []


def test_the_field_reference_in_the_doc_is_current() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert reference.with_reference(text) == text, (
        "docs/policy.md is stale: run python -m policy.reference --write docs/policy.md"
    )
    assert reference.main(["--check", str(DOC)]) == 0


def test_the_reference_tool_rewrites_a_stale_doc(tmp_path: Path) -> None:
    stale = tmp_path / "policy.md"
    stale.write_text(f"# Title\n\n{reference.BEGIN}\nold table\n{reference.END}\n\ntail\n", encoding="utf-8")
    assert reference.main(["--check", str(stale)]) == 1
    assert reference.main(["--write", str(stale)]) == 0
    assert reference.main(["--check", str(stale)]) == 0
    text = stale.read_text(encoding="utf-8")
    assert text.startswith("# Title\n\n") and text.endswith("\n\ntail\n")
    assert "| `exclude_cidrs` | list of string, 2 to 64 characters | `[]` |" in text


def test_the_reference_tool_needs_the_markers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bare = tmp_path / "bare.md"
    bare.write_text("no markers\n", encoding="utf-8")
    assert reference.main(["--check", str(bare)]) == 1
    assert "has no" in capsys.readouterr().err


def test_the_examples_decode_to_the_same_policy() -> None:
    policies = {fmt: load_policy_file(path) for fmt, path in EXAMPLES.items()}
    assert policies["yaml"] == policies["json"] == policies["toml"]
    assert policies["yaml"].name == "web-frontend"


@pytest.mark.parametrize("fmt", ["yaml", "json", "toml"])
def test_the_doc_shows_the_examples_verbatim(fmt: Format) -> None:
    blocks = re.findall(rf"```{fmt}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert blocks, f"docs/policy.md has no {fmt} example"
    assert blocks[0] == EXAMPLES[fmt].read_text(encoding="utf-8")


def test_the_validation_sample_in_the_doc_is_what_decoding_reports() -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## What is checked") :]
    bad = re.search(r"```yaml\n(.*?)```", section, flags=re.DOTALL)
    output = re.search(r"```text\n(.*?)```", section, flags=re.DOTALL)
    assert bad is not None and output is not None
    with pytest.raises(PolicyError) as caught:
        decode_policy(bad.group(1).encode(), "yaml", source="policy.yaml")
    assert str(caught.value) + "\n" == output.group(1)


def test_the_reference_names_every_type_in_words() -> None:
    rendered = reference.render_reference()
    assert re.findall(r"\| [A-Za-z]+Type \|", rendered) == []  # a msgspec type class the labels do not know
    assert "| `ratio` | number, 0.0 to 10.0 | `0.2` |" in rendered
    assert "| `unauthenticated` | `true` or `false` | `false` |" in rendered


def test_the_services_example_is_a_valid_bundle_the_doc_shows_verbatim() -> None:
    policy = load_policy_file(SERVICES_EXAMPLE)
    index = PolicyIndex(policy)
    assert [plan.key for plan in index.services.plans] == [("cart", 80), ("payments", 50051), ("postgres", 5432)]
    cart = index.service("fd00:96::10", 80)
    assert cart is not None and [endpoint.weight for endpoint in cart.endpoints] == [2, 1, 1]
    assert cart.route("GET", "/cart/42").name == "reads" and cart.route("POST", "/cart/42").name == "default"
    payments = index.meshed("10.1.1.5", 50051)  # no identity of its own: outbound.meshed's
    assert payments is not None and payments.expected.pattern == "spiffe://cluster.local/ns/shop/*"
    section = DOC.read_text(encoding="utf-8").split("## Services, routes and retries", 1)[1]
    shown = re.search(r"```yaml\n(.*?)```", section, flags=re.DOTALL)
    assert shown is not None and shown.group(1) == SERVICES_EXAMPLE.read_text(encoding="utf-8")
