"""How good a link file is against gold: precision, recall and F1 per band, and calibration (ECE).

The consolidated protocol of DBP2.0 (Sun et al., 2021): every KG1 entity counts, linked in
the gold or not. A link is right when the gold holds its pair; a link for an entity without
a gold link is a false positive; a gold pair no link names is a false negative. So recall is
over every gold pair given: give the gold of the entities that were linked (for a run, the
gold minus the seeds), and entities the file does not list count as missed. Rows without a
KG2 entity (``--all``'s no-match rows) are no link.

Calibration compares each link's confidence with how often links of that confidence are
right: ten equal bins of confidence, and the expected calibration error
ECE = Σ_b (n_b / n) · |precision_b − mean confidence_b| over every row that names a KG2 entity.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mmalign.links.config import BANDS, Band
from mmalign.links.linkfile import LinkRows, read_links
from mmalign.pairs import read_pairs
from mmalign.report import SILENT, Reporter
from mmalign.workspace import Workspace

BINS = 10
GROUPS: tuple[tuple[str, tuple[Band, ...]], ...] = (
    ("accept", (Band.ACCEPT,)),
    ("review", (Band.REVIEW,)),
    ("reject", (Band.REJECT,)),
    ("accept+review", (Band.ACCEPT, Band.REVIEW)),
)


def evaluate_links(workdir: Path, links: Path, gold: Path, *, many: bool = False, skip_unknown: bool = False,
                   reporter: Reporter = SILENT) -> dict[str, Any]:
    """:func:`link_metrics` of a link file against a gold pair file, both read in the workspace's keys."""
    workspace = Workspace.open(workdir)
    rows = read_links(links, workspace, many=many)
    pairs = read_pairs(gold, workspace, skip_unknown=skip_unknown, reporter=reporter)
    missing = np.setdiff1d(pairs[:, 0], rows.kg1)
    if len(missing):
        reporter.info(f"{len(missing):,} gold KG1 entities have no row in {links.name}: their gold pairs count as missed")
    return link_metrics(rows, pairs)


def link_metrics(rows: LinkRows, gold: np.ndarray, entities: np.ndarray | None = None) -> dict[str, Any]:
    """Precision, recall and F1 per band group, the calibration table and ECE.

    ``gold`` is (P, 2) id pairs. ``entities`` (KG1 ids) restricts rows and gold to those
    entities (the test pairs' entities, say). Precision is None for a group without links.
    """
    if entities is not None:
        keep = np.isin(rows.kg1, entities)
        rows = LinkRows(rows.kg1[keep], rows.kg2[keep], rows.confidence[keep], rows.band[keep])
        gold = gold[np.isin(gold[:, 0], entities)]
    gold_set = set(map(tuple, gold.tolist()))
    linked = rows.kg2 >= 0
    right = np.array([(a, b) in gold_set for a, b in zip(rows.kg1.tolist(), rows.kg2.tolist())], dtype=bool)
    groups = []
    for name, bands in GROUPS:
        chosen = linked & np.isin(rows.band, [BANDS.index(band) for band in bands])
        n, correct = int(chosen.sum()), int((chosen & right).sum())
        precision = correct / n if n else None
        recall = correct / len(gold_set) if gold_set else None
        f1 = 2 * precision * recall / (precision + recall) if precision and recall else 0.0
        groups.append({"band": name, "links": n, "correct": correct, "precision": precision, "recall": recall, "f1": f1})
    table, ece = calibration(rows.confidence[linked], right[linked])
    return {
        "entities": int(len(np.union1d(rows.kg1, gold[:, 0]))),
        "gold_pairs": len(gold_set),
        "links": int(linked.sum()),
        "bands": groups,
        "calibration": table,
        "ece": ece,
    }


def calibration(confidence: np.ndarray, right: np.ndarray, bins: int = BINS) -> tuple[list[dict[str, Any]], float | None]:
    """Per bin of confidence (the last one closed at 1): count, mean confidence, precision; and ECE."""
    which = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    table = []
    ece = 0.0
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        mean = float(confidence[inside].mean()) if n else None
        precision = float(right[inside].mean()) if n else None
        if n:
            ece += n / len(confidence) * abs(precision - mean)
        table.append({"low": b / bins, "high": (b + 1) / bins, "count": n, "confidence": mean, "precision": precision})
    return table, (ece if len(confidence) else None)
