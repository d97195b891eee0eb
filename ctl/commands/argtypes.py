"""argparse ``type=`` converters: their messages become "argument --flag: <message>" and exit status 2."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

_Number = TypeVar("_Number", int, float)
_Value = TypeVar("_Value")


def number_in(
    convert: Callable[[str], _Number], low: _Number, high: _Number, *, what: str, unit: str = ""
) -> Callable[[str], _Number]:
    """A converter accepting ``low <= convert(text) <= high``; ``what`` names the kind ("a whole number")."""

    def parse(text: str) -> _Number:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is out of range ({low:g} to {high:g}{unit})")
        return value

    return parse


def checked(validate: Callable[[str], _Value]) -> Callable[[str], _Value]:
    """A converter from a parser that raises ValueError with a message naming the problem."""

    def parse(text: str) -> _Value:
        try:
            return validate(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse
