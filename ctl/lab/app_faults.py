"""The faults a lab demo app can be told to show on its HTTP port, so a test can make one endpoint of a service
fail, slow down or hang without restarting it. Pure: parsing and the fault state, no I/O.

A fault is set with a control request to the app itself (``POST /_lab/fail?mode=...``, ``POST
/_lab/delay?ms=...``; ``meshctl lab fail|delay``) and applies to every later request except the control ones.
"""

from __future__ import annotations

import enum
from typing import Final
from urllib.parse import parse_qs, urlsplit

CONTROL_PREFIX: Final = "/_lab/"
MAX_DELAY_MS: Final = 600_000  # ten minutes: a "slow" endpoint, never one that waits for ever by mistake


class FailMode(enum.Enum):
    """What the app does with a request while a fault is set."""

    OFF = "off"  # answers normally
    STATUS = "status"  # answers with an error status (e.g. 503) and a one-line body
    RESET = "reset"  # resets the connection (RST) once the request head is read: nothing answered
    HANG = "hang"  # reads the request and never answers; the connection stays open until the client closes it


class Faults:
    """The app's current fault: a fail mode (with its status for ``STATUS``) and a delay before every answer."""

    def __init__(self) -> None:
        self.mode = FailMode.OFF
        self.status = 0
        self.delay_ms = 0

    def describe(self) -> str:
        mode = str(self.status) if self.mode is FailMode.STATUS else self.mode.value
        return f"fail={mode} delay_ms={self.delay_ms}"

    def set_fail(self, text: str) -> None:
        """``off``, ``reset``, ``hang`` or an error status 400-599; ValueError naming the accepted values."""
        self.mode, self.status = parse_fail_mode(text)

    def set_delay(self, text: str) -> None:
        self.delay_ms = parse_delay_ms(text)


def parse_fail_mode(text: str) -> tuple[FailMode, int]:
    if text.isdigit():
        status = int(text)
        if 400 <= status <= 599:
            return FailMode.STATUS, status
    elif text in (FailMode.OFF.value, FailMode.RESET.value, FailMode.HANG.value):
        return FailMode(text), 0
    raise ValueError(f"invalid fail mode {text!r}: off, reset, hang or an error status 400-599 (e.g. 503)")


def parse_delay_ms(text: str) -> int:
    if not text.isdigit() or int(text) > MAX_DELAY_MS:
        raise ValueError(f"invalid delay {text!r}: whole milliseconds, 0 to {MAX_DELAY_MS}")
    return int(text)


def parse_status(text: str) -> int:
    if not text.isdigit() or not 200 <= int(text) <= 599:
        raise ValueError(f"invalid status {text!r}: 200 to 599")
    return int(text)


def query_value(target: str, name: str) -> str:
    """The value of query parameter ``name`` in a request target; ValueError naming it when it is missing."""
    values = parse_qs(urlsplit(target).query).get(name)
    if not values:
        raise ValueError(f"missing query parameter {name!r}")
    return values[0]


def path_of(target: str) -> str:
    return urlsplit(target).path
