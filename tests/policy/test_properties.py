"""Hypothesis properties of decoding: round trips, no crash on any input, and the shape check agreeing with
msgspec on every document."""

from __future__ import annotations

import msgspec
import msgspec.inspect as mi
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.codec import dec_hook, enc_hook
from policy.load import Format, PolicyError, decode_policy, encode_policy, policy_version
from policy.model import Policy
from policy.shape import check_shape
from tests.policy.strategies import policies

POLICY_TYPE = mi.type_info(Policy)


@given(policies())
def test_any_policy_encoded_decodes_back_equal(policy: Policy) -> None:
    decoded = decode_policy(encode_policy(policy), "json")
    assert decoded == policy
    assert encode_policy(decoded) == encode_policy(policy)
    assert policy_version(decoded) == policy_version(policy)


@given(policies())
def test_any_policy_written_as_yaml_decodes_back_equal(policy: Policy) -> None:
    text = yaml.safe_dump(msgspec.to_builtins(policy, enc_hook=enc_hook), allow_unicode=True)
    assert decode_policy(text.encode(), "yaml") == policy


@settings(max_examples=50)  # two policies per example: the slowest strategy here
@given(policies(), policies())
def test_the_version_differs_when_the_policy_does(first: Policy, second: Policy) -> None:
    assert (policy_version(first) == policy_version(second)) == (encode_policy(first) == encode_policy(second))


@pytest.mark.parametrize("fmt", ["yaml", "json", "toml"])
@given(data=st.binary(max_size=300))
def test_any_bytes_give_a_policy_or_a_policy_error(fmt: Format, data: bytes) -> None:
    try:
        decode_policy(data, fmt)
    except PolicyError as exc:
        assert exc.problems
        assert all(problem.message for problem in exc.problems)


FIELD_NAMES = [
    "version",
    "name",
    "timeouts",
    "connect",
    "idle",
    "inbound",
    "outbound",
    "default_protocol",
    "ports",
    "exclude_ports",
    "exclude_cidrs",
    "port",
    "protocol",
    "connect_timeout",
    "idle_timeout",
    "other",
]
scalars = (
    st.none()
    | st.booleans()
    | st.sampled_from([0, 1, 2, 80, 65535, 65536, -1])
    | st.integers()
    | st.floats(allow_nan=False)
    | st.sampled_from(["opaque", "detect", "Detect", "10s", "0s", "1h30m", "x" * 300, "10.0.0.0/8", "fd00::/8", ""])
    | st.text(max_size=5)
)
# Documents shaped like bundles (known field names, nested mappings and lists) with any values at any place.
documents = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(FIELD_NAMES), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=500)
@given(st.dictionaries(st.sampled_from(FIELD_NAMES), documents, max_size=5))
def test_the_shape_check_accepts_exactly_what_msgspec_accepts(document: dict[str, object]) -> None:
    _, problems = check_shape(document, POLICY_TYPE)
    try:
        msgspec.convert(document, Policy, dec_hook=dec_hook)
    except msgspec.ValidationError:
        assert problems, "msgspec refused a document the shape check passed"
    else:
        assert not problems, f"msgspec accepted a document the shape check refused: {problems}"


@given(st.dictionaries(st.sampled_from(FIELD_NAMES), documents, max_size=5))
def test_any_json_document_gives_a_policy_or_a_policy_error(document: dict[str, object]) -> None:
    try:
        decode_policy(msgspec.json.encode(document), "json")
    except PolicyError as exc:
        assert exc.problems
