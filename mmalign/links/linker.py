"""The library behind ``mmalign link``: a decision with a calibrated confidence for every non-seed KG1 entity.

Seeds are the run's train and valid pairs, as for ``predict``. Three searches run with the
same procedure (:func:`mmalign.links.candidates.decide`), at the run's CSLS setting:

1. *links*: non-seed KG1 entities among non-seed KG2 entities;
2. *matched* (calibration): the validation KG1 entities join the queries and their targets
   the candidates, so they are searched as a linked entity is;
3. *unmatched* (calibration): the same queries without the validation targets among the
   candidates, so each validation entity stands for an entity with no counterpart.

:mod:`mmalign.links.calibration` fits on 2 and 3 and estimates the unmatched share on 1. The
fit, the share and the accept threshold are kept in the run's ``links/calibration.json``,
keyed by the embeddings' hash and the settings that change the features; a later ``link``
with the same key reads them back instead of fitting again, so its confidences are the same.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmalign import __version__
from mmalign.atomic import atomic_write_json, file_sha256
from mmalign.errors import MMAlignError
from mmalign.links.calibration import Calibrator, accept_threshold, fit
from mmalign.links.candidates import FEATURES, Decisions, decide
from mmalign.links.config import ACCEPT_PRECISION, BANDS, Band, LinkConfig
from mmalign.links.prior import DegreeShape, PairShape, Prior, degrees
from mmalign.pairs import read_run_pairs
from mmalign.predict import csls_setting, given_seeds, open_run
from mmalign.report import SILENT, Reporter
from mmalign.run import pairs_file, read_json
from mmalign.training.splits import BOOTSTRAPPED

CALIBRATION_FORMAT = 2  # 2: the degree prior (files of format 1 are fitted again)


def calibration_file(folder: Path) -> Path:
    """Where a run keeps its link calibration."""
    return folder / "links" / "calibration.json"


@dataclass
class Links:
    """One row per non-seed KG1 entity (ascending ids): its candidate (-1: none), confidence and band."""

    kg1_keys: list[str]
    kg2_keys: list[str]
    kg1: np.ndarray
    kg2: np.ndarray
    confidence: np.ndarray
    band: np.ndarray
    """Indices into :data:`BANDS`."""
    many: bool
    onto1: str
    onto2: str
    """IRIs of the two KGs (the workspace's ``kg1/`` and ``kg2/`` folders), for the Alignment format."""

    def rows(self, bands: tuple[Band, ...]) -> np.ndarray:
        """Positions of the rows in ``bands``, in entity order."""
        return np.nonzero(np.isin(self.band, [BANDS.index(band) for band in bands]))[0]

    def counts(self) -> dict[str, int]:
        return {band.value: int((self.band == i).sum()) for i, band in enumerate(BANDS)}


def link(workdir: Path, run: Path | None, config: LinkConfig, reporter: Reporter = SILENT) -> Links:
    """Decide, for every non-seed KG1 entity of the run, its KG2 match or none, with a confidence."""
    folder, workspace, left, right, run_config = open_run(Path(workdir), run)
    valid = read_run_pairs(pairs_file(folder, "valid"), workspace)
    if valid is None:
        raise MMAlignError(
            "this run has no validation pairs (pairs/valid.tsv); link calibrates its confidences on them: "
            "train a run with --valid FILE or a --valid-fraction above 0", path=folder,
        )
    seeds = given_seeds(folder, workspace)
    queries = np.setdiff1d(np.arange(len(left)), seeds[:, 0])
    candidates = np.setdiff1d(np.arange(len(right)), seeds[:, 1])
    csls_k = csls_setting(run_config, None)
    settings = dict(csls_k=csls_k, top_k=config.top_k, many=config.many, reporter=reporter)
    reporter.info(
        f"linking {len(queries):,} non-seed KG1 entities among {len(candidates):,} non-seed KG2 entities "
        f"{'(seeds bootstrapped from names are linked too) ' if pairs_file(folder, BOOTSTRAPPED).is_file() else ''}"
        f"(CSLS k={csls_k}, {'several KG1 entities per KG2 entity' if config.many else 'one-to-one'})"
    )
    decided = decide(left, right, queries, candidates, **settings)
    mask = decided.decided
    degree = (degrees(workspace.kg1.triples, len(workspace.kg1.entities)),
              degrees(workspace.kg2.triples, len(workspace.kg2.entities)))
    pair_degrees = (degree[0][queries[mask]], degree[1][decided.targets[mask]])  # of each decided pair

    key = {"embeddings_sha256": file_sha256(folder / "embeddings.safetensors"), "csls": csls_k,
           "top_k": None if config.many else config.top_k, "many": config.many, "features": list(FEATURES),
           "prior": config.prior.value}
    path = calibration_file(folder)
    saved = read_json(path) if path.is_file() else None
    if saved is not None and saved.get("format") == CALIBRATION_FORMAT and saved.get("key") == key:
        reporter.info(
            f"calibration read back from {path} (fitted earlier on these embeddings and settings): estimated share "
            f"of non-seed KG1 entities without a counterpart {saved['population']['estimated_unmatched']:.1%}"
        )
    else:
        shape = PairShape.fit(*degree, seeds) if config.prior is Prior.DEGREE else PairShape.uniform()
        saved = _calibrate(left, right, valid, queries, candidates, decided, shape, shape.of(*pair_degrees), settings,
                           reporter)
        saved["key"] = key
    calibrator = Calibrator.from_dict(saved["calibrator"])
    accept = saved["accept"] if config.accept is None else config.accept
    review = min(config.review, accept)  # above the accept threshold: no review band

    confidence = np.zeros(len(queries))
    confidence[mask] = calibrator.confidence(decided.features[mask], calibrator.shape.of(*pair_degrees))
    band = np.full(len(queries), BANDS.index(Band.REJECT), dtype=np.int8)
    band[mask & (confidence >= review)] = BANDS.index(Band.REVIEW)
    band[mask & (confidence >= accept)] = BANDS.index(Band.ACCEPT)
    links = Links(
        kg1_keys=workspace.kg1.entities, kg2_keys=workspace.kg2.entities, kg1=queries, kg2=decided.targets,
        confidence=confidence, band=band, many=config.many,
        onto1=(workspace.path / "kg1").resolve().as_uri(), onto2=(workspace.path / "kg2").resolve().as_uri(),
    )
    counts = links.counts()
    accepted = links.rows((Band.ACCEPT,))
    expected = f", expected precision {confidence[accepted].mean():.3f}" if len(accepted) else ""
    reporter.info(
        f"accept ≥ {accept:.4f}{' (chosen on validation)' if config.accept is None else ''}, review ≥ {review:.4f}: "
        f"{counts['accept']:,} accepted{expected}, {counts['review']:,} to review, {counts['reject']:,} rejected"
    )
    saved["last"] = {"accept": accept, "review": review, "format": config.format.value, "counts": counts,
                     "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_write_json(path, saved)
    return links


def _calibrate(left: torch.Tensor, right: torch.Tensor, valid: np.ndarray, queries: np.ndarray, candidates: np.ndarray,
               decided: Decisions, shape: PairShape, population_h: np.ndarray, settings: dict[str, Any],
               reporter: Reporter) -> dict[str, Any]:
    """Fit on the validation pairs' two worlds; the calibration file's content (without its key).

    ``population_h``: the shape of each pair ``decided`` holds (its decided rows, in order).
    """
    valid_queries = np.unique(valid[:, 0])
    gold = set(map(tuple, valid.tolist()))
    cal_queries = np.union1d(queries, valid_queries)
    at = np.searchsorted(cal_queries, valid_queries)
    matched = decide(left, right, cal_queries, np.union1d(candidates, valid[:, 1]), **settings)
    # Without the validation targets (still candidates when the seeds were bootstrapped and are linked too).
    unmatched = decide(left, right, cal_queries, np.setdiff1d(candidates, valid[:, 1]), **settings)
    has = matched.decided[at]
    matched_x = matched.features[at][has]
    matched_correct = np.array([(q, t) in gold for q, t in zip(valid_queries[has].tolist(), matched.targets[at][has].tolist())],
                               dtype=bool)
    unmatched_x = unmatched.features[at][unmatched.decided[at]]
    calibrator, steps = fit(matched_x, matched_correct, unmatched_x, decided.features[decided.decided], shape, population_h)
    threshold = accept_threshold(calibrator, matched_x, matched_correct, unmatched_x, population_h, ACCEPT_PRECISION)
    unmatched_share = float(np.mean(calibrator.unmatched(population_h))) if len(population_h) else 0.0
    reporter.info(
        f"calibration on {len(valid_queries):,} validation entities: {int(matched_correct.sum()):,} of "
        f"{len(matched_x):,} decided right with their targets among the candidates, "
        f"{len(unmatched_x):,} decided (always wrongly) without them"
    )
    reporter.info(
        f"estimated share of non-seed KG1 entities without a counterpart: {unmatched_share:.1%} "
        f"(fitted on {int(decided.decided.sum()):,} entities' candidates{_shape_note(shape)})"
    )
    if threshold["precision"] is None:
        reporter.warn(f"no confidence reaches precision {ACCEPT_PRECISION} on validation: nothing is accepted by default")
    else:
        reporter.info(
            f"accept threshold {threshold['accept']:.4f}: validation precision {threshold['precision']:.3f} "
            f"(target {ACCEPT_PRECISION}), recall {threshold['recall']:.3f}"
        )
    return {
        "format": CALIBRATION_FORMAT,
        "mmalign": __version__,
        "fitted": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "calibrator": calibrator.to_dict(),
        "accept": threshold["accept"],
        "validation": {
            "entities": len(valid_queries), "matched": len(matched_x), "matched_correct": int(matched_correct.sum()),
            "unmatched": len(unmatched_x), "accept_target_precision": ACCEPT_PRECISION,
            "accept_precision": threshold["precision"], "accept_recall": threshold["recall"],
        },
        "population": {"entities": len(queries), "decided": int(decided.decided.sum()),
                       "estimated_unmatched": unmatched_share, "scale_steps": steps},
    }


def _shape_note(shape: PairShape) -> str:
    """How the prior varies by degree, for the log: each KG's classes below its best-connected entities' share."""
    if shape.kg1.seeds == 0 and shape.kg2.seeds == 0:
        return ", the same prior at every degree"
    return (f", prior by degree from {max(shape.kg1.seeds, shape.kg2.seeds):,} seed pairs relative to the best "
            f"connected: KG1 {_classes(shape.kg1)}; KG2 {_classes(shape.kg2)}")


def _classes(shape: DegreeShape) -> str:
    """``degree 1: 0.04, degree 2-3: 0.60`` for the classes below 1, or what else holds."""
    if shape.seeds == 0:
        return "the same at every degree (too few seeds)"
    edges = shape.edges.tolist()
    ranges = [str(a) if b == a + 1 else f"{a}-{b - 1}" for a, b in zip(edges, edges[1:])] + [f"{edges[-1]}+"]
    classes = ", ".join(f"degree {r}: {h:.2f}" for r, h in zip(ranges, shape.shape.tolist()) if h < 0.995)
    return classes or "the same at every degree"
