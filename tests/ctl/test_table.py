from __future__ import annotations

import pytest

from ctl.table import Column, render_table


def test_columns_align_and_numbers_sit_right() -> None:
    lines = render_table(
        [Column("ID", right=True), Column("ADDRESS"), Column("SIZE", right=True)],
        [["7", "[fd00:7472:696f::11]:51234", "5.0 MiB"], ["123", "198.18.7.11:1", "0 B"]],
    )
    assert lines == [
        " ID  ADDRESS                        SIZE",
        "  7  [fd00:7472:696f::11]:51234  5.0 MiB",
        "123  198.18.7.11:1                   0 B",
    ]


def test_no_trailing_spaces_when_the_last_column_is_short() -> None:
    lines = render_table([Column("A"), Column("REASON")], [["x", ""], ["y", "eof"]])
    assert all(line == line.rstrip() for line in lines)


def test_header_only_when_there_are_no_rows() -> None:
    assert render_table([Column("A"), Column("B")], []) == ["A  B"]


def test_a_row_with_the_wrong_number_of_cells_is_an_error() -> None:
    with pytest.raises(ValueError, match="row 0 has 1 cells for 2 columns"):
        render_table([Column("A"), Column("B")], [["only one"]])
