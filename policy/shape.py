"""Check plain data against the model's types and report EVERY mismatch, where msgspec stops at the first.

Pure: no I/O. The walk follows ``msgspec.inspect.type_info`` of the model, so new fields and constraints are
checked without touching this file. It returns the document with each value converted (Durations, enum
members) or replaced by ``INVALID``, so the cross-field checks in ``policy.semantics`` still run on the
well-formed parts and report their problems in the same pass.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from typing import Final

import msgspec.inspect as mi

from policy.codec import decode_custom, describe_custom
from policy.problems import Problem, field_path, item_path, show, show_kind


class Invalid(enum.Enum):
    """Marks a value that failed its type check (already reported); later checks skip it."""

    INVALID = "invalid"


INVALID: Final = Invalid.INVALID

# Upper bound on values visited: YAML aliases can repeat one list many times, and a check must stay fast.
MAX_VALUES: Final = 200_000

_ArrayType = mi.ListType | mi.VarTupleType | mi.SetType | mi.FrozenSetType
_NUMBER_TEXT: Final = re.compile(r"\s*[0-9]+\s*")
# Types whose description does not depend on their constraints; list items get their own messages.
_FIXED_DESCRIPTIONS: Final[dict[type[mi.Type], str]] = {
    mi.FloatType: "a number",
    mi.BoolType: "true or false",
    mi.NoneType: "null",
    mi.StructType: "a mapping of fields",
    mi.ListType: "a list",
    mi.VarTupleType: "a list",
    mi.SetType: "a list",
    mi.FrozenSetType: "a list",
}


class TooLargeError(Exception):
    """The document has more than ``MAX_VALUES`` values."""


def check_shape(document: object, tp: mi.Type) -> tuple[object, list[Problem]]:
    """Check ``document`` against ``tp``: the checked document and every problem, in document order.

    Raises TooLargeError if the document holds more than ``MAX_VALUES`` values.
    """
    checker = _ShapeChecker()
    checked = checker.check(document, tp, "")
    return checked, checker.problems


def describe(tp: mi.Type) -> str:
    """What a value of ``tp`` must be, in an operator's words ("an integer from 1 to 65535")."""
    fixed = _FIXED_DESCRIPTIONS.get(type(tp))
    if fixed is not None:
        return fixed
    match tp:
        case mi.Metadata():
            text = describe(tp.type)
        case mi.IntType():
            text = _describe_int(tp)
        case mi.StrType():
            text = _describe_str(tp)
        case mi.EnumType():
            text = _one_of([member.value for member in tp.cls])
        case mi.LiteralType():
            text = _one_of(list(tp.values))
        case mi.UnionType():
            text = " or ".join(describe(member) for member in tp.types)
        case mi.CustomType():
            text = describe_custom(tp.cls)
        case _:
            raise NotImplementedError(f"policy fields of type {tp!r} are not supported")
    return text


class _ShapeChecker:
    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self._budget = MAX_VALUES

    def check(self, value: object, tp: mi.Type, path: str) -> object:
        self._budget -= 1
        if self._budget < 0:
            raise TooLargeError
        match tp:
            case mi.Metadata():
                checked = self.check(value, tp.type, path)
            case mi.StructType():
                checked = self._struct(value, tp, path)
            case mi.ListType() | mi.VarTupleType() | mi.SetType() | mi.FrozenSetType():
                checked = self._array(value, tp, path)
            case mi.UnionType():
                checked = self._union(value, tp, path)
            case mi.CustomType():
                checked = self._custom(value, tp, path)
            case mi.IntType() | mi.FloatType():
                checked = self._number(value, tp, path)
            case mi.StrType():
                checked = self._text(value, tp, path)
            case mi.EnumType() | mi.LiteralType():
                checked = self._choice(value, tp, path)
            case mi.BoolType():
                checked = value if isinstance(value, bool) else self._mismatch(value, tp, path)
            case mi.NoneType():
                checked = value if value is None else self._mismatch(value, tp, path)
            case _:
                raise NotImplementedError(f"policy fields of type {tp!r} are not supported")
        return checked

    def _bad(self, path: str, message: str) -> Invalid:
        self.problems.append(Problem(path, message))
        return INVALID

    def _mismatch(self, value: object, tp: mi.Type, path: str) -> Invalid:
        hint = ""
        if isinstance(value, str) and isinstance(tp, mi.IntType) and _NUMBER_TEXT.fullmatch(value):
            hint = "; write the number without quotes"
        return self._bad(path, f"expected {describe(tp)}, got {show_kind(value)}{hint}")

    def _struct(self, value: object, tp: mi.StructType, path: str) -> object:
        if not isinstance(value, dict):
            return self._mismatch(value, tp, path)
        fields = {field.encode_name: field for field in tp.fields}
        checked: dict[str, object] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self._bad(path, f"field names must be text, got {show_kind(key)}")
                continue
            field = fields.get(key)
            if field is not None:
                checked[key] = self.check(item, field.type, field_path(path, key))
            elif tp.forbid_unknown_fields:
                self._bad(field_path(path, key), _unknown_field(key, list(fields)))
        for name, field in fields.items():
            if field.required and name not in value:
                self._bad(path, f"missing required field {name!r}")
        return checked

    def _array(self, value: object, tp: _ArrayType, path: str) -> object:
        if not isinstance(value, list | tuple):
            return self._mismatch(value, tp, path)
        items = [self.check(item, tp.item_type, item_path(path, i)) for i, item in enumerate(value)]
        if tp.min_length is not None and len(value) < tp.min_length:
            self._bad(path, f"expected at least {tp.min_length} items, got {len(value)}")
        if tp.max_length is not None and len(value) > tp.max_length:
            self._bad(path, f"expected at most {tp.max_length} items, got {len(value)}")
        return items

    def _union(self, value: object, tp: mi.UnionType, path: str) -> object:
        members = [member for member in tp.types if not isinstance(member, mi.NoneType)]
        if value is None and len(members) < len(tp.types):
            return None
        if len(members) == 1:
            # The usual `X | None`: check against X so the message is X's own.
            return self.check(value, members[0], path)
        for member in members:
            trial = _ShapeChecker()
            checked = trial.check(value, member, path)
            if not trial.problems:
                return checked
        return self._mismatch(value, tp, path)

    def _custom(self, value: object, tp: mi.CustomType, path: str) -> object:
        try:
            return decode_custom(tp.cls, value)
        except ValueError as exc:
            return self._bad(path, str(exc))

    def _number(self, value: object, tp: mi.IntType | mi.FloatType, path: str) -> object:
        # bool is an int subclass, but msgspec (and YAML readers' intent) keep true/false apart from numbers.
        wanted = int if isinstance(tp, mi.IntType) else int | float
        if isinstance(value, bool) or not isinstance(value, wanted):
            return self._mismatch(value, tp, path)
        if not _number_fits(value, tp):
            return self._bad(path, f"expected {describe(tp)}, got {show(value)}")
        return value

    def _text(self, value: object, tp: mi.StrType, path: str) -> object:
        if not isinstance(value, str):
            return self._mismatch(value, tp, path)
        if not _text_fits(value, tp):
            return self._bad(path, f"expected {describe(tp)}, got {show(value)} ({len(value)} characters)")
        return value

    def _choice(self, value: object, tp: mi.EnumType | mi.LiteralType, path: str) -> object:
        options: list[object] = list(tp.cls) if isinstance(tp, mi.EnumType) else list(tp.values)
        allowed = [option.value if isinstance(option, enum.Enum) else option for option in options]
        for option, plain in zip(options, allowed, strict=True):
            # Exact type match: msgspec accepts neither true for 1 nor 1 for "1".
            if type(value) is type(plain) and value == plain:
                return option
        return self._bad(path, _not_one_of(value, allowed))


def _number_fits(value: float, tp: mi.IntType | mi.FloatType) -> bool:
    multiple = tp.multiple_of
    return (
        (tp.ge is None or value >= tp.ge)
        and (tp.gt is None or value > tp.gt)
        and (tp.le is None or value <= tp.le)
        and (tp.lt is None or value < tp.lt)
        and (multiple is None or value % multiple == 0)
    )


def _text_fits(value: str, tp: mi.StrType) -> bool:
    return (
        (tp.min_length is None or len(value) >= tp.min_length)
        and (tp.max_length is None or len(value) <= tp.max_length)
        and (tp.pattern is None or re.search(tp.pattern, value) is not None)
    )


def _describe_int(tp: mi.IntType) -> str:
    low = tp.ge if tp.ge is not None else (tp.gt + 1 if tp.gt is not None else None)
    high = tp.le if tp.le is not None else (tp.lt - 1 if tp.lt is not None else None)
    text = "an integer"
    if low is not None and high is not None:
        text = f"an integer from {low} to {high}"
    elif low is not None:
        text = f"an integer of at least {low}"
    elif high is not None:
        text = f"an integer of at most {high}"
    if tp.multiple_of is not None:
        text += f" that is a multiple of {tp.multiple_of}"
    return text


def _describe_str(tp: mi.StrType) -> str:
    text = "text"
    if tp.min_length is not None and tp.max_length is not None:
        text = f"text of {tp.min_length} to {tp.max_length} characters"
    elif tp.max_length is not None:
        text = f"text of at most {tp.max_length} characters"
    elif tp.min_length is not None:
        text = f"text of at least {tp.min_length} characters"
    if tp.pattern is not None:
        text += f" matching {tp.pattern}"
    return text


def _one_of(values: Sequence[object]) -> str:
    if len(values) == 1:
        return show(values[0])
    return "one of " + ", ".join(show(value) for value in values)


def _not_one_of(value: object, allowed: Sequence[object]) -> str:
    # Name the kind only when it is the mistake: "got 2", but "got '1' (text)" where 1 is expected.
    right_kind = any(type(value) is type(option) for option in allowed)
    message = f"expected {_one_of(allowed)}, got {show(value) if right_kind else show_kind(value)}"
    if isinstance(value, str):
        texts = [option for option in allowed if isinstance(option, str)]
        by_lower = {text.lower(): text for text in texts}
        import difflib  # only for a misspelt value: not worth its memory in every proxy

        close = difflib.get_close_matches(value, texts, n=1)
        guess = by_lower.get(value.strip().lower()) or (close[0] if close else None)
        if guess is not None:
            message += f"; did you mean {guess!r}?"
    return message


def _unknown_field(key: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, known, n=1)
    guess = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown field {key!r}{guess} (known fields: {', '.join(known)})"
