import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataplane.balance.grpc_timeout import format_grpc_timeout, parse_grpc_timeout


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("100m", 0.1),
        (b"1S", 1.0),
        ("2M", 120.0),
        ("1H", 3600.0),
        ("250u", 0.00025),
        ("5n", 5e-9),
        ("99999999S", 99999999.0),
        ("0m", 0.0),
        ("00000001m", 0.001),
        ("000000001m", None),  # more than 8 digits
        ("12345678m", 12345.678),
    ],
)
def test_parse(value: str | bytes, seconds: float | None) -> None:
    assert parse_grpc_timeout(value) == (pytest.approx(seconds) if seconds is not None else None)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "m",
        "100",
        "100x",
        "123456789m",
        "-1m",
        "+1m",
        " 1m",
        "1m ",
        "1.5S",
        "1s",
        "\uff11m",
        b"\xff1m",
        "1mm",
        "0x1S",
    ],
)
def test_malformed_values_are_ignored(value: str | bytes) -> None:
    assert parse_grpc_timeout(value) is None


@pytest.mark.parametrize(
    ("seconds", "spelling"),
    [
        (0.25, b"250m"),
        (0.1, b"100m"),
        (1.0, b"1S"),
        (1.1, b"1100m"),
        (60.0, b"1M"),
        (7200.0, b"2H"),
        (5e-9, b"5n"),
        (0.0, b"1n"),
        (-3.0, b"1n"),
        (1e-12, b"1n"),
        (float("inf"), b"99999999H"),
        (1e20, b"99999999H"),
        (123.456789123, b"123457m"),  # not exact in 8 digits: the finest unit that fits, rounded up
    ],
)
def test_format(seconds: float, spelling: bytes) -> None:
    assert format_grpc_timeout(seconds) == spelling


def test_nan_is_an_error() -> None:
    with pytest.raises(ValueError, match="NaN"):
        format_grpc_timeout(float("nan"))


@given(st.integers(0, 99_999_999), st.sampled_from("HMSmun"))
def test_parsed_values_round_trip(count: int, unit: str) -> None:
    seconds = parse_grpc_timeout(f"{count}{unit}")
    assert seconds is not None
    spelled = format_grpc_timeout(seconds)
    assert len(spelled) <= 9
    again = parse_grpc_timeout(spelled)
    assert again is not None
    if count:
        assert again == pytest.approx(seconds, rel=1e-9)
    else:
        assert spelled == b"1n"


@given(st.floats(min_value=1e-9, max_value=99_999_999 * 3600))
def test_format_never_shortens_a_deadline_and_rounds_up_by_less_than_a_unit(seconds: float) -> None:
    spelled = format_grpc_timeout(seconds)
    parsed = parse_grpc_timeout(spelled)
    assert parsed is not None
    assert parsed >= seconds * (1 - 1e-12)
    # The finest unit that fits in 8 digits: the next finer one is at most 1000 times smaller, so the count is
    # above 10**5 and rounding up adds less than 1e-5 of the value (or 1 ns).
    assert parsed <= seconds * (1 + 1e-5) + 1e-9
