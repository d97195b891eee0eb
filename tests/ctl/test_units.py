from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctl.units import format_bytes, format_duration


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (12 * 1024, "12 KiB"),
        (1024 * 1024 - 1, "1.0 MiB"),  # would round to "1024 KiB"
        (5 * 1024 * 1024, "5.0 MiB"),
        (340 * 1024 * 1024, "340 MiB"),
        (3 * 1024**3 + 200 * 1024**2, "3.2 GiB"),
        (2048 * 1024**5, "2048 PiB"),
    ],
)
def test_format_bytes(count: int, text: str) -> None:
    assert format_bytes(count) == text


def test_format_bytes_rejects_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        format_bytes(-1)


@given(st.integers(min_value=0, max_value=1000 * 1024**5))
def test_format_bytes_is_short_and_has_a_unit(count: int) -> None:
    text = format_bytes(count)
    number, unit = text.split(" ")
    assert unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    assert len(number) <= 4
    assert float(number) < 1024 or unit == "B"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0ms"),
        (0.35, "350ms"),
        (0.9994, "999ms"),
        (0.9996, "1.0s"),
        (1.0, "1.0s"),
        (4.26, "4.2s"),
        (12.9, "12s"),
        (60.0, "1m"),
        (184.0, "3m4s"),
        (3600.0, "1h"),
        (3723.0, "1h2m"),
        (86400 * 3 + 3600 * 4 + 59, "3d4h"),
        (-0.2, "0ms"),  # clock skew between proxy and meshctl
        (float("nan"), "-"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.floats(min_value=0, max_value=10**9, allow_nan=False))
def test_format_duration_shows_one_or_two_units_largest_first(seconds: float) -> None:
    text = format_duration(seconds)
    assert re.fullmatch(r"[0-9]{1,3}ms|[0-9]\.[0-9]s|[0-9]+[dhms](?:[0-9]{1,2}[hms])?", text), text
    units = re.findall(r"[a-z]+", text)
    order = ["d", "h", "m", "s", "ms"]
    assert [order.index(unit) for unit in units] == sorted(order.index(unit) for unit in units)
    if len(units) == 2:
        assert order.index(units[1]) == order.index(units[0]) + 1
