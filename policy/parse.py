"""Bundle bytes to plain data in one of three formats, with operator-facing syntax errors.

Pure: no I/O. The formats' own parsers are used rather than msgspec's decoders because they report the line
and column of a syntax error and let us see repeated keys, which JSON and YAML readers otherwise resolve
silently by keeping the last one. msgspec then converts the checked data into the model (``policy.load``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final, Literal

import msgspec

from policy.problems import Problem, field_path, item_path

if TYPE_CHECKING:
    import yaml

Format = Literal["yaml", "json", "toml"]

_YAML_MERGE_TAG: Final = "tag:yaml.org,2002:merge"


class Parsed(msgspec.Struct, frozen=True):
    """The result of parsing: the document, and problems found on the way (repeated keys, syntax errors)."""

    document: object
    problems: tuple[Problem, ...]
    complete: bool
    """False when the bytes could not be parsed at all; ``document`` is then None and must not be checked."""


def parse_document(data: bytes, fmt: Format) -> Parsed:
    """Parse ``data`` as ``fmt``. Never raises for bad input: every mistake becomes a Problem."""
    try:
        # utf-8-sig: tolerate the byte-order mark some Windows editors write.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad = data[exc.start]
        return _failed(f"the file is not UTF-8 text: byte 0x{bad:02x} at offset {exc.start} is not valid")
    if not text.strip():
        return _failed("the file is empty (a half-written file looks like this)")
    try:
        match fmt:
            case "json":
                return _parse_json(text)
            case "yaml":
                return _parse_yaml(text)
            case "toml":
                return _parse_toml(text)
    except RecursionError:
        return _failed("the document is nested too deeply")


def _failed(message: str) -> Parsed:
    return Parsed(document=None, problems=(Problem("", message),), complete=False)


# === JSON ===


class _JsonObject:
    """A JSON object as its raw key/value pairs, so repeated keys can be reported with their path."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[str, object]]) -> None:
        self.pairs = pairs


class _NonFiniteNumberError(ValueError):
    pass


def _reject_constant(name: str) -> float:
    raise _NonFiniteNumberError(name)


def _parse_json(text: str) -> Parsed:
    try:
        raw: object = json.loads(text, object_pairs_hook=_JsonObject, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        return _failed(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")
    except _NonFiniteNumberError as exc:
        return _failed(f"invalid JSON: {exc} is not a JSON number")
    problems: list[Problem] = []
    document = _json_plain(raw, "", problems)
    return Parsed(document=document, problems=tuple(problems), complete=True)


def _json_plain(value: object, path: str, problems: list[Problem]) -> object:
    """Turn parsed JSON into dicts and lists, reporting each repeated key at its path."""
    if isinstance(value, list):
        return [_json_plain(item, item_path(path, i), problems) for i, item in enumerate(value)]
    if not isinstance(value, _JsonObject):
        return value
    plain: dict[str, object] = {}
    for key, item in value.pairs:
        child = field_path(path, key)
        if key in plain:
            problems.append(Problem(child, f"{key!r} is given twice in the same object; keep only one"))
        plain[key] = _json_plain(item, child, problems)
    return plain


# === YAML ===


def _parse_yaml(text: str) -> Parsed:
    import yaml  # only when a bundle is YAML: the parser costs the proxy about 1 MiB resident

    try:
        # The reader rejects non-printable characters already in the constructor.
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:
        return _failed(f"invalid YAML: character {exc.character:#06x} at offset {exc.position} is not allowed")
    try:
        node = loader.get_single_node()
        if node is None:  # only comments or blank lines
            return Parsed(document=None, problems=(), complete=True)
        problems = tuple(_repeated_yaml_keys(node, "", set()))
        document: object = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        return _failed(_yaml_message(exc))
    except yaml.YAMLError as exc:
        return _failed(f"invalid YAML: {_one_line(str(exc))}")
    finally:
        loader.dispose()
    return Parsed(document=document, problems=problems, complete=True)


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    what = exc.problem or exc.context or "syntax error"
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    context = f" ({exc.context})" if exc.problem and exc.context else ""
    return f"invalid YAML{where}: {what}{context}"


def _repeated_yaml_keys(node: yaml.Node, path: str, seen: set[int]) -> Iterator[Problem]:
    import yaml

    # Aliases make the node graph shared (even cyclic): visit each node once.
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _YAML_MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            child = field_path(path, key)
            if key in first_line:
                lines = f"lines {first_line[key]} and {line}"
                yield Problem(child, f"{key!r} is given twice ({lines}); keep only one")
            else:
                first_line[key] = line
            yield from _repeated_yaml_keys(value_node, child, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _repeated_yaml_keys(item, item_path(path, index), seen)


# === TOML ===


def _parse_toml(text: str) -> Parsed:
    import tomllib

    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        return _failed(f"invalid TOML: {message[:1].lower()}{message[1:]}")
    return Parsed(document=document, problems=(), complete=True)


def _one_line(text: str) -> str:
    return " ".join(text.split())
