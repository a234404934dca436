"""Pair files ↔ local ids: a run folder's pair files written and read back through the one reader.

The seed-file errors (columns, unknown entities, duplicates, empty files) are tested end to end
through ``mmalign train`` in test_train.py.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from mmalign.errors import MMAlignError
from mmalign.pairs import read_pairs, read_run_pairs, write_pairs


def kg(entities: list[str]) -> SimpleNamespace:
    return SimpleNamespace(entities=entities, entity_index=lambda: {key: i for i, key in enumerate(entities)})


# Keys that are column names: without the header written first, the first pair would read as one.
WORKSPACE = SimpleNamespace(kg1=kg(["source", "a", "b"]), kg2=kg(["x", "target", "y"]))


def test_written_pairs_read_back_as_the_same_ids(tmp_path: Path) -> None:
    pairs = np.array([[0, 1], [2, 0], [1, 2]])
    path = tmp_path / "pairs" / "train.tsv"
    write_pairs(path, pairs, WORKSPACE)
    assert path.read_text().splitlines()[1:] == ["source\ttarget", "b\tx", "a\ty"]
    assert read_run_pairs(path, WORKSPACE).tolist() == pairs.tolist()
    assert read_pairs(path, WORKSPACE).tolist() == pairs.tolist()  # usable as a gold file too


def test_run_pairs_missing_or_naming_entities_the_workspace_lost(tmp_path: Path) -> None:
    assert read_run_pairs(tmp_path / "test.tsv", WORKSPACE) is None
    path = tmp_path / "valid.tsv"
    path.write_text("a\tx\ngone\ty\n")
    with pytest.raises(MMAlignError, match="re-ingested") as error:
        read_run_pairs(path, WORKSPACE)
    assert error.value.line == 2
    with pytest.raises(MMAlignError, match="--skip-unknown"):
        read_pairs(path, WORKSPACE)
