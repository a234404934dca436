"""Pair files (seeds, validation, test, gold, and a run folder's ``pairs/*.tsv``) ↔ local entity ids.

Every pair file is read through here, so every command gives the same line-numbered errors:
wrong column count, an entity the workspace does not know (a counted warning with
``skip_unknown``), a pair listed twice, or a file without any pair. A run folder's pair files
are written here too, as entity keys, so they read back through the same checks.
A first line is a header when it starts with ``#`` or names columns (``kg1``, ``kg2``,
``kg1_entity``, ``source``, ``target``, ``left``, ``right``, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mmalign.atomic import atomic_write_bytes
from mmalign.errors import MMAlignError
from mmalign.io.text import read_lines
from mmalign.io.tsv import is_header
from mmalign.report import SILENT, Reporter

if TYPE_CHECKING:
    from mmalign.workspace import Workspace

PAIR_FILE_HEADER = "kg1_entity\tkg2_entity\n"
"""First line of the pair files written here (a header :func:`read_pairs` recognises)."""

PAIR_HEADER_WORDS = frozenset(
    "kg1 kg2 kg1_entity kg2_entity entity1 entity2 source target left right head tail".split()
)


def read_pairs(
    path: Path,
    workspace: Workspace,
    *,
    skip_unknown: bool = False,
    unknown_hint: str = "use --skip-unknown to skip such pairs",
    reporter: Reporter = SILENT,
) -> np.ndarray:
    """``(P, 2)`` int64 array of (KG1 local id, KG2 local id), in file order.

    ``unknown_hint`` ends the error about an unknown entity: what the user can do about it.
    """
    path = Path(path)
    if not path.is_file():
        raise MMAlignError("no such file", path=path)
    lines = read_lines(path)
    start = 1 if lines and is_header(lines[0], PAIR_HEADER_WORDS) else 0
    left_index, right_index = workspace.kg1.entity_index(), workspace.kg2.entity_index()
    pairs: list[tuple[int, int]] = []
    seen: dict[tuple[int, int], int] = {}
    unknown, first_unknown = 0, ""
    for number in range(start, len(lines)):
        line = lines[number]
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise MMAlignError(f"expected 2 tab-separated columns (kg1 entity, kg2 entity), found {len(fields)}", path, number + 1)
        left, right = left_index.get(fields[0]), right_index.get(fields[1])
        if left is None or right is None:
            side, key = ("KG1", fields[0]) if left is None else ("KG2", fields[1])
            problem = f"unknown {side} entity {key!r}"
            if not skip_unknown:
                raise MMAlignError(f"{problem} ({unknown_hint})", path, number + 1)
            unknown += 1
            first_unknown = first_unknown or f"line {number + 1}: {problem}"
            continue
        if (left, right) in seen:
            raise MMAlignError(f"pair listed twice (first on line {seen[(left, right)]})", path, number + 1)
        seen[(left, right)] = number + 1
        pairs.append((left, right))
    if unknown:
        reporter.warn(f"{path}: skipped {unknown:,} pair{'s' if unknown > 1 else ''} naming unknown entities (first: {first_unknown})")
    if not pairs:
        raise MMAlignError("no pairs in file", path=path)
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


def read_run_pairs(path: Path, workspace: Workspace) -> np.ndarray | None:
    """A run folder's pair file as local ids, like :func:`read_pairs`; None when the run has none.

    The run wrote keys its workspace knew, so an unknown one means the workspace was
    re-ingested since: the error says so rather than offering ``--skip-unknown``.
    """
    if not Path(path).is_file():
        return None
    return read_pairs(path, workspace, unknown_hint="was the workspace re-ingested after this run?")


def write_pairs(path: Path, pairs: np.ndarray, workspace: Workspace) -> None:
    """Write local id pairs as entity keys, one ``kg1<TAB>kg2`` line each, atomically (folders made).

    The header line keeps a first pair whose keys happen to be column names (``source``,
    ``left``, ...) from being read back as a header.
    """
    kg1, kg2 = workspace.kg1.entities, workspace.kg2.entities
    lines = "".join(f"{kg1[a]}\t{kg2[b]}\n" for a, b in pairs.tolist())
    atomic_write_bytes(path, (PAIR_FILE_HEADER + lines).encode())
