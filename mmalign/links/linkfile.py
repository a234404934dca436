"""Reading a link file (``mmalign link``'s TSV) back as local ids, with FILE:LINE errors.

Columns ``kg1_entity, kg2_entity, confidence, band``; a first line naming them (or starting
with ``#``) is a header. An empty kg2_entity means "no match" and needs band ``reject``.
Errors name the file and line: a wrong column count, an entity the workspace does not know,
a confidence that is not a number in [0, 1], an unknown band, or a KG1 entity listed twice
(allowed with ``many``, for link files of tools that are not one-to-one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mmalign.errors import MMAlignError
from mmalign.io.text import read_lines
from mmalign.io.tsv import is_header
from mmalign.links.config import BANDS, Band

if TYPE_CHECKING:
    from mmalign.workspace import Workspace

LINK_COLUMNS = ("kg1_entity", "kg2_entity", "confidence", "band")


@dataclass
class LinkRows:
    """The rows of a link file: KG1 ids, KG2 ids (-1: no match), confidences, band indices into BANDS."""

    kg1: np.ndarray
    kg2: np.ndarray
    confidence: np.ndarray
    band: np.ndarray


def read_links(path: Path, workspace: Workspace, *, many: bool = False) -> LinkRows:
    """Every row of the link file at ``path``, in file order; a file of only a header has none."""
    path = Path(path)
    if not path.is_file():
        raise MMAlignError("no such file", path=path)
    lines = read_lines(path)
    start = 1 if lines and is_header(lines[0], frozenset(LINK_COLUMNS)) else 0
    left_index, right_index = workspace.kg1.entity_index(), workspace.kg2.entity_index()
    kg1: list[int] = []
    kg2: list[int] = []
    confidence: list[float] = []
    band: list[int] = []
    first_seen: dict[int, int] = {}
    for number in range(start, len(lines)):
        line = lines[number]
        if not line.strip():
            continue
        where = (path, number + 1)
        fields = line.split("\t")
        if len(fields) != len(LINK_COLUMNS):
            raise MMAlignError(f"expected {len(LINK_COLUMNS)} tab-separated columns ({', '.join(LINK_COLUMNS)}), found {len(fields)}", *where)
        key1, key2, value, band_name = fields
        left = left_index.get(key1)
        if left is None:
            raise MMAlignError(f"unknown KG1 entity {key1!r} (was the file written for another workspace?)", *where)
        right = right_index.get(key2, -2) if key2 else -1
        if right == -2:
            raise MMAlignError(f"unknown KG2 entity {key2!r} (was the file written for another workspace?)", *where)
        try:
            number_value = float(value)
        except ValueError:
            number_value = math.nan
        if not 0 <= number_value <= 1:
            raise MMAlignError(f"confidence must be a number in [0, 1], got {value!r}", *where)
        try:
            decided = Band.parse(band_name, "band")
        except MMAlignError as error:
            raise MMAlignError(error.message, *where) from None
        if right < 0 and decided is not Band.REJECT:
            raise MMAlignError(f"an empty kg2_entity (no match) needs band reject, not {decided.value}", *where)
        if left in first_seen and not many:
            raise MMAlignError(
                f"KG1 entity {key1!r} listed twice (first on line {first_seen[left]}); "
                "--many allows several links per KG1 entity", *where,
            )
        first_seen.setdefault(left, number + 1)
        kg1.append(left)
        kg2.append(right)
        confidence.append(number_value)
        band.append(BANDS.index(decided))
    return LinkRows(np.asarray(kg1, dtype=np.int64), np.asarray(kg2, dtype=np.int64),
                    np.asarray(confidence, dtype=np.float64), np.asarray(band, dtype=np.int8))
