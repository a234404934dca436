"""Tab-separated files: ``triples.tsv``, ``attributes.tsv``, ``names.tsv``, ``images.tsv``.

A first line is a header, and skipped, when it starts with ``#`` or when every field is a
known column word (``head``, ``relation``, ``tail``, ``subject``, ``predicate``, ``object``,
``entity``, ``attribute``, ``value``, ``name``, ``path``, ``image``; any case, an optional
leading ``#``). Blank lines are ignored everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from mmalign.io.records import BadLines
from mmalign.io.text import iter_lines

HEADER_WORDS = frozenset(
    "head relation tail subject predicate object entity attribute value name path image".split()
)


def is_header(line: str, words: frozenset[str] = HEADER_WORDS) -> bool:
    """Whether a first line names columns instead of holding data: it starts with ``#``, or every
    tab-separated field is one of ``words`` (any case). Every reader of tabular files asks this."""
    if line.startswith("#"):
        return True
    return all(field.strip().lower() in words for field in line.split("\t"))


def read_rows(
    path: Path, columns: int, bad: BadLines, *, optional_last: bool = False, join_extra: str | None = None
) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, fields) for each data line with exactly ``columns`` fields, streamed.

    ``optional_last`` lets the last field be empty (an attribute value may be ""); other empty
    fields are bad lines. ``join_extra`` joins surplus fields into the last one with that
    separator (OpenEA attribute values); otherwise a wrong field count is a bad line.
    """
    required = columns - 1 if optional_last else columns
    for number, line in iter_lines(path):
        if number == 1 and is_header(line):
            continue
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != columns:
            if join_extra is not None and len(fields) > columns:
                fields[columns - 1 :] = [join_extra.join(fields[columns - 1 :])]
            else:
                bad(f"expected {columns} tab-separated columns, found {len(fields)}", path, number)
                continue
        if not all(fields[:required]):
            bad(f"empty column {fields.index('') + 1}", path, number)
            continue
        yield number, fields
