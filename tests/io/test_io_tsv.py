"""TSV reading: header detection, column checks, encodings and line endings."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmalign.errors import MMAlignError
from mmalign.io.records import BadLines
from mmalign.io.tsv import is_header, read_rows


@pytest.mark.parametrize(
    ("line", "header"),
    [
        ("head\trelation\ttail", True),
        ("#Subject\tPredicate\tObject", True),
        ("# anything at all", True),
        ("entity\tname", True),
        ("Entity\tATTRIBUTE\tvalue", True),
        ("/m/01\t/film/genre\t/m/02", False),
        ("name\tAnn", False),
    ],
)
def test_header_detection(line: str, header: bool) -> None:
    assert is_header(line) is header


def rows(path: Path, columns: int, skip: bool = False, **kwargs: object) -> list[tuple[int, list[str]]]:
    return list(read_rows(path, columns, BadLines(skip), **kwargs))  # type: ignore[arg-type]


def test_header_skipped_blank_lines_ignored_line_numbers_kept(tmp_path: Path) -> None:
    path = tmp_path / "triples.tsv"
    path.write_text("head\trelation\ttail\na\tr\tb\n\n  \nb\tr\tc\n")
    assert rows(path, 3) == [(2, ["a", "r", "b"]), (5, ["b", "r", "c"])]


def test_first_data_line_is_not_taken_for_a_header(tmp_path: Path) -> None:
    path = tmp_path / "names.tsv"
    path.write_text("a\tAnn\n")
    assert rows(path, 2) == [(1, ["a", "Ann"])]


def test_crlf_bom_and_no_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "triples.tsv"
    path.write_bytes("\ufeffa\tr\tb\r\nb\tr\tc".encode())
    assert rows(path, 3) == [(1, ["a", "r", "b"]), (2, ["b", "r", "c"])]


def test_wrong_column_count_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "triples.tsv"
    path.write_text("a\tr\tb\na\tr\nb\tr\tc\n")
    with pytest.raises(MMAlignError) as error:
        rows(path, 3)
    assert str(error.value) == f"{path}:2: expected 3 tab-separated columns, found 2"
    assert rows(path, 3, skip=True) == [(1, ["a", "r", "b"]), (3, ["b", "r", "c"])]


def test_empty_column_is_bad_except_an_optional_last_one(tmp_path: Path) -> None:
    path = tmp_path / "attributes.tsv"
    path.write_text("a\tage\t\n\tage\t3\n")
    assert rows(path, 3, skip=True, optional_last=True) == [(1, ["a", "age", ""])]
    with pytest.raises(MMAlignError, match=":2: empty column 1"):
        rows(path, 3, optional_last=True)


def test_extra_columns_joined_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "attr_triples_1"
    path.write_text("a\tnote\tsome\ttabbed\ttext\n")
    assert rows(path, 3, join_extra=" ") == [(1, ["a", "note", "some tabbed text"])]


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "names.tsv"
    path.write_bytes(b"a\tAnn\nb\tB\xe9a\n")
    with pytest.raises(MMAlignError) as error:
        rows(path, 2)
    assert error.value.line == 2 and "not UTF-8" in error.value.message
