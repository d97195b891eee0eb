"""Reading the checked document (``policy.shape``'s output) in the cross-field checks.

Pure: no I/O. A value that failed its type check is ``INVALID`` (already reported), and a missing one is absent:
these accessors turn both into "nothing", so each check looks only at well-formed values.
"""

from __future__ import annotations

from collections.abc import Iterator

from policy.authz import pattern_problem
from policy.duration import Duration
from policy.problems import Problem, item_path, show


def fields(value: object) -> dict[str, object]:
    """A checked Struct's fields, or none if it was missing or invalid."""
    if not isinstance(value, dict):
        return {}
    return {str(key): item for key, item in value.items()}


def items(value: object) -> list[object]:
    """A checked list's items, or none if it was missing or invalid."""
    return list(value) if isinstance(value, list) else []


def port(value: object) -> int | None:
    """A checked port, or None."""
    # bool is an int subclass, but the shape check never lets one through as a port.
    return value if isinstance(value, int) else None


def duration(value: object) -> Duration | None:
    """A checked duration, or None (null, missing or invalid)."""
    return value if isinstance(value, Duration) else None


def check_pattern(pattern: object, path: str) -> Iterator[Problem]:
    """An identity pattern that can never match a SPIFFE ID."""
    if isinstance(pattern, str):
        why = pattern_problem(pattern)
        if why is not None:
            yield Problem(path, f"{show(pattern)} is not an identity pattern: {why}")


def entries(value: object, path: str) -> Iterator[tuple[str, dict[str, object]]]:
    """The path and fields of each Struct in the checked list ``value`` found at ``path``."""
    for index, entry in enumerate(items(value)):
        yield item_path(path, index), fields(entry)
