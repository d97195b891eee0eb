"""What is wrong with a policy bundle: one ``Problem`` per mistake, all raised together as ``PolicyError``.

Pure: no I/O. Paths are dotted paths into the document as the operator wrote it (``inbound.ports[2].port``),
so ``meshctl policy validate`` and the proxy's reload log point at the same spot.
"""

from __future__ import annotations

import datetime
from typing import Final

import msgspec

# Long enough for any sane value, short enough that one bad line cannot flood a log.
_SHOW_LIMIT: Final = 60


class Problem(msgspec.Struct, frozen=True):
    """One mistake in a bundle."""

    path: str
    """Dotted path into the document, ``inbound.ports[2].port``; ``""`` for the whole document."""
    message: str
    """Plain words naming the offending value: ``expected an integer from 1 to 65535, got 0``."""


class PolicyError(Exception):
    """A bundle that cannot be used. ``str()`` is one ``<source>: <path>: <message>`` line per problem."""

    source: str
    problems: tuple[Problem, ...]

    def __init__(self, source: str, problems: tuple[Problem, ...]) -> None:
        if not problems:
            raise ValueError("a PolicyError needs at least one problem")
        super().__init__(source, problems)
        self.source = source
        self.problems = problems

    def __str__(self) -> str:
        return "\n".join(describe_problem(self.source, problem) for problem in self.problems)


def describe_problem(source: str, problem: Problem) -> str:
    """One problem as one line, ``<source>: <path>: <message>`` (no path for whole-document problems)."""
    if problem.path:
        return f"{source}: {problem.path}: {problem.message}"
    return f"{source}: {problem.message}"


def field_path(parent: str, name: str) -> str:
    """The path of field ``name`` inside the object at ``parent``."""
    if not name.isidentifier():
        # Keys with dots, spaces or brackets would make the dotted path ambiguous.
        name = msgspec.json.encode(name).decode()
    return f"{parent}.{name}" if parent else name


def item_path(parent: str, index: int) -> str:
    """The path of item ``index`` of the list at ``parent``."""
    return f"{parent}[{index}]"


def show(value: object) -> str:
    """A value as it appears in a message: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= _SHOW_LIMIT else f"{text[: _SHOW_LIMIT - 3]}..."


def show_kind(value: object) -> str:
    """A value and its kind as an operator would name them, for "wrong type" messages: ``'80' (text)``."""
    match value:
        case None:
            text = "null (no value)"
        case bool():
            text = f"{str(value).lower()} (a true/false value)"
        case int():
            text = f"{value} (a whole number)"
        case float():
            text = f"{value!r} (a decimal number)"
        case str():
            text = f"{show(value)} (text)"
        case list() | tuple():
            text = "a list"
        case dict():
            text = "a mapping"
        case datetime.date() | datetime.time():  # TOML and YAML read dates and times natively
            text = f"{value} (a date/time)"
        case _:
            text = f"a {type(value).__name__}"
    return text
