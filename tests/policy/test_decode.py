"""decode_policy and load_policy_file: the three formats, and every kind of problem with its path."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from policy.duration import Duration
from policy.load import (
    MAX_BUNDLE_BYTES,
    Format,
    PolicyError,
    Problem,
    decode_policy,
    describe_os_error,
    encode_policy,
    format_for_path,
    load_policy_file,
    policy_version,
)
from policy.model import InboundPolicy, OutboundPolicy, Policy, PortPolicy, Protocol, Timeouts

EXPECTED = Policy(
    name="web",
    timeouts=Timeouts(connect=Duration.parse("2s"), idle=Duration.parse("30m")),
    inbound=InboundPolicy(
        ports=(PortPolicy(port=8080, protocol=Protocol.DETECT, idle_timeout=Duration.parse("5m")),),
        exclude_ports=(22,),
    ),
    outbound=OutboundPolicy(
        default_protocol=Protocol.DETECT,
        ports=(PortPolicy(port=3306, protocol=Protocol.OPAQUE),),
        exclude_cidrs=("10.96.0.0/12", "fd00::/8"),
    ),
)

SAME_IN_THREE_FORMATS: dict[Format, bytes] = {
    "yaml": b"""
name: web
timeouts: {connect: 2s, idle: 30m}
inbound:
  ports:
    - {port: 8080, protocol: detect, idle_timeout: 5m}
  exclude_ports: [22]
outbound:
  default_protocol: detect
  ports: [{port: 3306, protocol: opaque}]
  exclude_cidrs: [10.96.0.0/12, "fd00::/8"]
""",
    "json": b"""{
  "name": "web",
  "timeouts": {"connect": "2s", "idle": "30m"},
  "inbound": {"ports": [{"port": 8080, "protocol": "detect", "idle_timeout": "5m"}], "exclude_ports": [22]},
  "outbound": {"default_protocol": "detect", "ports": [{"port": 3306, "protocol": "opaque"}],
               "exclude_cidrs": ["10.96.0.0/12", "fd00::/8"]}
}""",
    "toml": b"""
name = "web"
[timeouts]
connect = "2s"
idle = "30m"
[inbound]
exclude_ports = [22]
[[inbound.ports]]
port = 8080
protocol = "detect"
idle_timeout = "5m"
[outbound]
default_protocol = "detect"
exclude_cidrs = ["10.96.0.0/12", "fd00::/8"]
[[outbound.ports]]
port = 3306
protocol = "opaque"
""",
}


def problems_of(data: bytes, fmt: Format = "yaml") -> list[Problem]:
    with pytest.raises(PolicyError) as caught:
        decode_policy(data, fmt, source="test.yaml")
    return list(caught.value.problems)


@pytest.mark.parametrize("fmt", ["yaml", "json", "toml"])
def test_the_same_bundle_decodes_equal_in_every_format(fmt: Format) -> None:
    assert decode_policy(SAME_IN_THREE_FORMATS[fmt], fmt) == EXPECTED


def test_an_omitted_field_takes_its_default() -> None:
    policy = decode_policy(b"version: 1\n", "yaml")
    assert policy == Policy()
    assert policy.timeouts.connect == Duration(1.0)
    assert policy.inbound.default_protocol is Protocol.DETECT
    assert policy.inbound.opaque_ports == (25, 587, 3306, 4444, 5432, 6379, 9300, 11211)
    assert policy.timeouts.detect == Duration(10.0)


@pytest.mark.parametrize(
    ("document", "path", "message"),
    [
        # wrong types
        (
            b"inbound: {ports: [{port: '80'}]}",
            "inbound.ports[0].port",
            "expected an integer from 1 to 65535, got '80' (text); write the number without quotes",
        ),
        (
            b"inbound: {exclude_ports: [true]}",
            "inbound.exclude_ports[0]",
            "expected an integer from 1 to 65535, got true (a true/false value)",
        ),
        (
            b"inbound: {exclude_ports: 22}",
            "inbound.exclude_ports",
            "expected a list, got 22 (a whole number)",
        ),
        (b"inbound: [1]", "inbound", "expected a mapping of fields, got a list"),
        (b"name: 7", "name", "expected text of at most 253 characters, got 7 (a whole number)"),
        (
            b"outbound: {exclude_cidrs: [2024-01-01]}",
            "outbound.exclude_cidrs[0]",
            "expected text of 2 to 64 characters, got 2024-01-01 (a date/time)",
        ),
        (
            b"inbound: {ports: [{port: 80.0}]}",
            "inbound.ports[0].port",
            "expected an integer from 1 to 65535, got 80.0 (a decimal number)",
        ),
        (
            b"inbound: {ports: [{port: }]}",
            "inbound.ports[0].port",
            "expected an integer from 1 to 65535, got null (no value)",
        ),
        # constraints
        (
            b"inbound: {ports: [{port: 0}]}",
            "inbound.ports[0].port",
            "expected an integer from 1 to 65535, got 0",
        ),
        (
            b"outbound: {exclude_ports: [65536]}",
            "outbound.exclude_ports[0]",
            "expected an integer from 1 to 65535, got 65536",
        ),
        (
            b"name: " + b"x" * 254,
            "name",
            "expected text of at most 253 characters, got '" + "x" * 56 + "... (254 characters)",
        ),
        (b"version: 2", "version", "expected 1, got 2"),
        (b"version: '1'", "version", "expected 1, got '1' (text)"),
        (
            b"inbound: {default_protocol: http}",
            "inbound.default_protocol",
            "expected one of 'opaque', 'detect', got 'http'",
        ),
        (
            b"inbound: {default_protocol: Detect}",
            "inbound.default_protocol",
            "expected one of 'opaque', 'detect', got 'Detect'; did you mean 'detect'?",
        ),
        # durations
        (
            b"timeouts: {idle: 10}",
            "timeouts.idle",
            "expected a duration such as 250ms, 10s, 5m or 1h, got 10 (a number without a unit)",
        ),
        (
            b"timeouts: {idle: 1h30m}",
            "timeouts.idle",
            "expected a duration such as 250ms, 10s, 5m or 1h, got '1h30m' "
            "(use a single unit, e.g. 90m instead of 1h30m)",
        ),
        (
            b"timeouts: {idle: 10 s}",
            "timeouts.idle",
            "expected a duration such as 250ms, 10s, 5m or 1h, got '10 s' (remove the spaces)",
        ),
        (
            b"timeouts: {idle: 10S}",
            "timeouts.idle",
            "expected a duration such as 250ms, 10s, 5m or 1h, got '10S' (units are lowercase)",
        ),
        (
            b"timeouts: {idle: -1s}",
            "timeouts.idle",
            "expected a duration such as 250ms, 10s, 5m or 1h, got '-1s' (durations cannot be negative)",
        ),
        (
            b"timeouts: {idle: '" + b"9" * 400 + b"h'}",
            "timeouts.idle",
            "duration '" + "9" * 400 + "h' is too large",
        ),
        # unknown and missing fields
        (
            b"inbound: {exclude_port: [22]}",
            "inbound.exclude_port",
            "unknown field 'exclude_port'; did you mean 'exclude_ports'? "
            "(known fields: default_protocol, opaque_ports, ports, exclude_ports, mtls, authorization)",
        ),
        (
            b"policy: {}",
            "policy",
            "unknown field 'policy' (known fields: version, name, timeouts, inbound, outbound)",
        ),
        (b"inbound: {ports: [{protocol: detect}]}", "inbound.ports[0]", "missing required field 'port'"),
        (b"inbound: {80: opaque}", "inbound", "field names must be text, got 80 (a whole number)"),
        # semantic checks
        (
            b"inbound: {ports: [{port: 80}, {port: 443}, {port: 80}]}",
            "inbound.ports[2].port",
            "port 80 is already configured by inbound.ports[0]; merge the two entries",
        ),
        (
            b"outbound: {ports: [{port: 80}], exclude_ports: [80]}",
            "outbound.exclude_ports[0]",
            "port 80 is excluded here but also configured by outbound.ports[0]; an excluded port is never "
            "proxied, so its settings would never apply: remove it from one of the two lists",
        ),
        (
            b"inbound: {exclude_ports: [22, 15, 22]}",
            "inbound.exclude_ports[2]",
            "port 22 is already excluded by inbound.exclude_ports[0]; list it once",
        ),
        (
            b"outbound: {opaque_ports: [3306, 25, 3306]}",
            "outbound.opaque_ports[2]",
            "port 3306 is already listed by outbound.opaque_ports[0]; list it once",
        ),
        (
            b"timeouts: {detect: 0s}",
            "timeouts.detect",
            "must be longer than zero, got 0s: a zero detect timeout would give up detection before any byte can "
            "arrive (use protocol: opaque for that)",
        ),
        (
            b"inbound: {ports: [{port: 80, detect_timeout: 0ms}]}",
            "inbound.ports[0].detect_timeout",
            "must be longer than zero, got 0ms: a zero detect timeout would give up detection before any byte can "
            "arrive (use protocol: opaque for that)",
        ),
        (
            b"outbound: {exclude_cidrs: [10.0.0.1/8]}",
            "outbound.exclude_cidrs[0]",
            "'10.0.0.1/8' has bits set after the /8 prefix; did you mean 10.0.0.0/8?",
        ),
        (
            b"outbound: {exclude_cidrs: [10.0.0.0/33]}",
            "outbound.exclude_cidrs[0]",
            "'10.0.0.0/33' is not a valid network: the prefix length must be 0 to 32 for IPv4",
        ),
        (
            b"outbound: {exclude_cidrs: ['fd00::/129']}",
            "outbound.exclude_cidrs[0]",
            "'fd00::/129' is not a valid network: the prefix length must be 0 to 128 for IPv6",
        ),
        (
            b"outbound: {exclude_cidrs: ['fd00::1/8']}",
            "outbound.exclude_cidrs[0]",
            "'fd00::1/8' has bits set after the /8 prefix; did you mean fd00::/8?",
        ),
        (
            b"outbound: {exclude_cidrs: [10.0.0/8]}",
            "outbound.exclude_cidrs[0]",
            "'10.0.0/8' is not a valid network in CIDR notation (like 10.0.0.0/8 or fd00::/8): "
            "Expected 4 octets in '10.0.0'",
        ),
        (
            b"outbound: {exclude_cidrs: [10.0.0.0/8, 10.0.0.0/8]}",
            "outbound.exclude_cidrs[1]",
            "10.0.0.0/8 is listed twice (also outbound.exclude_cidrs[0]); list it once",
        ),
        (
            b"outbound: {exclude_cidrs: [10.1.0.0/16, 192.168.0.0/16, 10.0.0.0/8]}",
            "outbound.exclude_cidrs[0]",
            "10.1.0.0/16 is already covered by outbound.exclude_cidrs[2] (10.0.0.0/8); remove it",
        ),
        (
            b"outbound: {exclude_cidrs: ['fd00::/8', 'FD00:0::/8']}",
            "outbound.exclude_cidrs[1]",
            "fd00::/8 is listed twice (also outbound.exclude_cidrs[0]); list it once",
        ),
        (
            b"timeouts: {response: 0s}",
            "timeouts.response",
            "must be longer than zero, got 0s: a zero response timeout would answer every HTTP request 504 (use null "
            "to wait without limit)",
        ),
        (
            b"outbound: {ports: [{port: 80, response_timeout: 0s}]}",
            "outbound.ports[0].response_timeout",
            "must be longer than zero, got 0s: a zero response timeout would answer every HTTP request 504 (use null "
            "to wait without limit)",
        ),
        (
            b"timeouts: {stream_idle: 0s}",
            "timeouts.stream_idle",
            "must be longer than zero, got 0s: a zero stream_idle timeout would reset every HTTP/2 stream at once",
        ),
        (
            b"timeouts: {connect: 0s}",
            "timeouts.connect",
            "must be longer than zero, got 0s: a zero connect timeout would fail every connection before it starts",
        ),
        (
            b"timeouts: {idle: 0.0ms}",
            "timeouts.idle",
            "must be longer than zero, got 0.0ms: a zero idle timeout would close every connection at once",
        ),
        (
            b"inbound: {ports: [{port: 80, connect_timeout: 0m}]}",
            "inbound.ports[0].connect_timeout",
            "must be longer than zero, got 0m: a zero connect timeout would fail every connection before it starts",
        ),
        (
            b"outbound: {ports: [{port: 80, idle_timeout: 0h}]}",
            "outbound.ports[0].idle_timeout",
            "must be longer than zero, got 0h: a zero idle timeout would close every connection at once",
        ),
        (
            b'name: "web\\nforged log line"',
            "name",
            "expected one line of text without control characters, got 'web\\nforged log line'",
        ),
        # repeated keys
        (b"name: a\ninbound: {}\nname: b\n", "name", "'name' is given twice (lines 1 and 3); keep only one"),
    ],
)
def test_each_problem_is_reported_with_its_path_and_message(document: bytes, path: str, message: str) -> None:
    assert problems_of(document) == [Problem(path, message)]


@pytest.mark.parametrize(
    ("fmt", "document", "message"),
    [
        (
            "yaml",
            b"inbound:\n  ports: [\n",
            "invalid YAML at line 3, column 1: expected the node content, "
            "but found '<stream end>' (while parsing a flow node)",
        ),
        ("yaml", b"a: b: c", "invalid YAML at line 1, column 5: mapping values are not allowed here"),
        ("json", b'{"name": "a",\n "inbound": }', "invalid JSON at line 2, column 13: Expecting value"),
        ("json", b'{"name": NaN}', "invalid JSON: NaN is not a JSON number"),
        ("toml", b'name = "a"\ninbound = \n', "invalid TOML: invalid value (at line 2, column 11)"),
        (
            "toml",
            b'name = "a"\nname = "b"\n',
            "invalid TOML: cannot overwrite a value (at line 2, column 11)",
        ),
        ("yaml", b"\xff\xfe", "the file is not UTF-8 text: byte 0xff at offset 0 is not valid"),
        ("json", b"  \n\t", "the file is empty (a half-written file looks like this)"),
        ("json", b"[" * 100_000 + b"]" * 100_000, "the document is nested too deeply"),
    ],
)
def test_a_syntax_error_is_one_problem_with_its_position(fmt: Format, document: bytes, message: str) -> None:
    assert problems_of(document, fmt) == [Problem("", message)]


@pytest.mark.parametrize(
    ("fmt", "document"),
    [
        ("yaml", b"# only a comment\n"),
        ("yaml", b"{}"),
        ("yaml", b"null"),
        ("json", b"{}"),
        ("toml", b"# c\n"),
    ],
)
def test_a_document_that_sets_no_fields_is_refused(fmt: Format, document: bytes) -> None:
    assert problems_of(document, fmt) == [
        Problem(
            "",
            "the document sets no fields (a half-written file looks like this); "
            "to run with every default on purpose, set version to 1",
        )
    ]


def test_json_repeated_keys_are_reported_at_their_path() -> None:
    document = b'{"inbound": {"ports": [{"port": 80, "port": 81}]}}'
    assert problems_of(document, "json") == [
        Problem("inbound.ports[0].port", "'port' is given twice in the same object; keep only one")
    ]


def test_a_top_level_list_is_not_a_bundle() -> None:
    assert problems_of(b"- 1\n") == [Problem("", "expected a mapping of fields, got a list")]


def test_a_document_with_several_problems_reports_all_of_them_in_one_error() -> None:
    document = b"""
version: 1
name: demo
timeouts: {connect: 0s, idle: forever}
inbound:
  default_protocl: detect
  ports:
    - port: 8080
    - port: 70000
    - port: 8080
  exclude_ports: [8080]
outbound:
  exclude_cidrs: [10.0.0.0/8, 10.2.0.0/16, 300.0.0.0/8]
"""
    with pytest.raises(PolicyError) as caught:
        decode_policy(document, "yaml", source="/etc/mesh/policy.yaml")
    error = caught.value
    assert error.source == "/etc/mesh/policy.yaml"
    assert [problem.path for problem in error.problems] == [
        "timeouts.idle",
        "inbound.default_protocl",
        "inbound.ports[1].port",
        "timeouts.connect",
        "inbound.ports[2].port",
        "inbound.exclude_ports[0]",
        "outbound.exclude_cidrs[2]",
        "outbound.exclude_cidrs[1]",
    ]
    lines = str(error).splitlines()
    assert len(lines) == len(error.problems)
    assert lines[0] == (
        "/etc/mesh/policy.yaml: timeouts.idle: expected a duration such as 250ms, 10s, 5m or 1h, got 'forever'"
    )
    assert all(line.startswith("/etc/mesh/policy.yaml: ") for line in lines)


def test_a_whole_document_problem_has_no_path_in_its_line() -> None:
    with pytest.raises(PolicyError) as caught:
        decode_policy(b"", "yaml", source="p.yaml")
    assert str(caught.value) == "p.yaml: the file is empty (a half-written file looks like this)"


def test_yaml_aliases_are_not_expanded_by_the_check() -> None:
    # Ten levels of ten aliases: 10**10 ports if anything expanded them. Each item of the outer list is a
    # list, which is one problem, and nothing looks inside it.
    lines = ["a0: &a0 [80, 80, 80, 80, 80, 80, 80, 80, 80, 80]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    document = ("x:\n" + "\n".join("  " + line for line in lines) + "\ninbound: {exclude_ports: *a9}\n").encode()
    problems = problems_of(document)
    assert problems[0].path == "x"  # the unknown field holding the anchors
    assert problems[1:] == [
        Problem(f"inbound.exclude_ports[{i}]", "expected an integer from 1 to 65535, got a list") for i in range(10)
    ]


def test_a_document_with_too_many_values_is_refused_without_listing_them() -> None:
    document = b'{"inbound": {"exclude_ports": [' + b",".join([b"0"] * 250_000) + b"]}}"
    assert len(document) < MAX_BUNDLE_BYTES
    assert problems_of(document, "json") == [
        Problem("", "the document holds more than 200000 values; a bundle is far smaller")
    ]


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("p.yaml", "yaml"),
        ("p.YML", "yaml"),
        ("/etc/mesh/p.json", "json"),
        ("p.toml", "toml"),
        ("a.b.toml", "toml"),
    ],
)
def test_format_for_path_goes_by_extension(name: str, fmt: Format) -> None:
    assert format_for_path(name) == fmt
    assert format_for_path(Path(name)) == fmt


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("policy.txt", "cannot tell the format from '.txt': name the file .yaml, .yml, .json or .toml"),
        ("policy", "cannot tell the format from no extension: name the file .yaml, .yml, .json or .toml"),
    ],
)
def test_format_for_path_refuses_other_extensions(name: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        format_for_path(name)
    assert caught.value.source == name
    assert caught.value.problems == (Problem("", message),)


def test_load_policy_file_reads_and_decodes(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_bytes(SAME_IN_THREE_FORMATS["json"])
    assert load_policy_file(path) == EXPECTED
    assert load_policy_file(str(path)) == EXPECTED


def test_load_policy_file_names_the_file_in_problems(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_bytes(b"inbound: {ports: [{port: 0}]}")
    with pytest.raises(PolicyError) as caught:
        load_policy_file(path)
    assert str(caught.value) == f"{path}: inbound.ports[0].port: expected an integer from 1 to 65535, got 0"


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "file not found"),
        ("directory", "is a directory, not a policy file"),
        ("too_large", f"the file is larger than {MAX_BUNDLE_BYTES} bytes"),
    ],
)
def test_load_policy_file_reports_unreadable_files(tmp_path: Path, setup: str, message: str) -> None:
    path = tmp_path / "policy.yaml"
    if setup == "directory":
        path.mkdir()
    elif setup == "too_large":
        path.write_bytes(b"#" * (MAX_BUNDLE_BYTES + 1))
    with pytest.raises(PolicyError) as caught:
        load_policy_file(path)
    assert caught.value.problems == (Problem("", message),)


def test_an_unreadable_file_is_described_in_plain_words() -> None:
    # Root (which runs these tests) can read a mode-000 file, so the wording is checked on the error itself.
    assert describe_os_error(PermissionError(13, "Permission denied")) == "permission denied"
    assert describe_os_error(OSError(5, "Input/output error")) == "cannot read the file: Input/output error"


def test_encode_policy_is_canonical_json() -> None:
    encoded = encode_policy(EXPECTED)
    assert msgspec.json.decode(encoded)["timeouts"] == {
        "connect": "2s",
        "idle": "30m",
        "detect": "10s",
        "response": None,
        "stream_idle": "5m",
    }
    assert decode_policy(encoded, "json") == EXPECTED
    # Durations are written in their one canonical spelling, so equal policies encode equal.
    longhand = Policy(timeouts=Timeouts(connect=Duration.parse("2000ms"), idle=Duration.parse("1800s")))
    shorthand = Policy(timeouts=Timeouts(connect=Duration.parse("2s"), idle=Duration.parse("30m")))
    assert encode_policy(longhand) == encode_policy(shorthand)


def test_policy_version_is_stable_and_changes_with_content() -> None:
    version = policy_version(EXPECTED)
    assert len(version) == 12
    assert all(char in "0123456789abcdef" for char in version)
    assert version == policy_version(decode_policy(SAME_IN_THREE_FORMATS["toml"], "toml"))
    renamed = msgspec.structs.replace(EXPECTED, name="web2")
    assert policy_version(renamed) != version
    assert policy_version(Policy()) != version
