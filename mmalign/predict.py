"""The library behind ``mmalign predict`` and ``mmalign evaluate``.

Both open a run folder and its workspace, check that the run's embeddings belong to that
workspace, and hand entity rows to :mod:`mmalign.search`. Ids stay inside: what leaves this
module is entity keys (the TSV lines of :meth:`Predictions.lines`) and metrics.

Seeds are the run's ``pairs/train.tsv`` and ``pairs/valid.tsv`` (valid pairs are seeds the
user gave too, held out only for model selection). ``predict`` ranks, for every KG1 entity
that is not a seed, every KG2 entity that is not a seed: all of them, not only gold targets
as in the papers' code, because a user aligning real KGs has no gold to narrow with.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from mmalign import search
from mmalign.errors import MMAlignError
from mmalign.evaluation import RankingConfig, RankMethod, evaluate_pairs, gold_targets
from mmalign.pairs import read_pairs
from mmalign.report import SILENT, Reporter
from mmalign.run import load_embeddings, read_json, resolve_run
from mmalign.search import ListSides
from mmalign.training.config import ComputeConfig, TrainConfig
from mmalign.training.splits import given_seeds
from mmalign.workspace import Workspace

DEFAULT_CSLS = 3
"""CSLS neighbourhood when the run's config does not name one (the training default)."""

HEADER = "kg1_entity\tkg2_entity\tscore\trank\n"
LINES_PER_CHUNK = 20000


class Direction(str, Enum):
    """Which KG's entities are the queries."""

    KG1_TO_KG2 = "kg1-to-kg2"
    KG2_TO_KG1 = "kg2-to-kg1"


@dataclass
class Predictions:
    """Top-k lists (or a 1:1 matching) ready to print.

    ``scores``/``indices`` are (Q, k): row q belongs to query entity ``query_ids[q]``, and
    ``indices`` are rows of ``candidate_ids``. ``rows``/``columns`` pick the printed entries
    (every entry for top-k; the matched ones for 1:1), so rank = column + 1.
    """

    direction: Direction
    query_keys: list[str]
    candidate_keys: list[str]
    query_ids: np.ndarray
    candidate_ids: np.ndarray
    scores: torch.Tensor
    indices: torch.Tensor
    rows: torch.Tensor
    columns: torch.Tensor
    test_metrics: dict[str, Any] | None
    """The run's test metrics from training (``summary.json``), None when trained without --test."""

    def lines(self) -> Iterator[str]:
        """The TSV, header first, in chunks of lines (so output streams and pipes can close).

        Columns stay ``kg1_entity, kg2_entity`` in both directions: a file of pairs reads the
        same whichever side asked. Scores have 6 decimals; ranks start at 1.
        """
        yield HEADER
        query_keys = [self.query_keys[i] for i in self.query_ids.tolist()]
        candidate_keys = [self.candidate_keys[i] for i in self.candidate_ids.tolist()]
        flip = self.direction is Direction.KG2_TO_KG1
        for start in range(0, len(self.rows), LINES_PER_CHUNK):
            rows = self.rows[start : start + LINES_PER_CHUNK]
            columns = self.columns[start : start + LINES_PER_CHUNK]
            scores = self.scores[rows, columns].tolist()
            candidates = self.indices[rows, columns].tolist()
            out = []
            for row, column, candidate, score in zip(rows.tolist(), columns.tolist(), candidates, scores):
                a, b = query_keys[row], candidate_keys[candidate]
                if flip:
                    a, b = b, a
                out.append(f"{a}\t{b}\t{score:.6f}\t{column + 1}\n")
            yield "".join(out)


def predict(
    workdir: Path,
    run: Path | None = None,
    *,
    top_k: int = 10,
    csls_k: int = 0,
    ranking: RankMethod | None = None,
    sinkhorn_sides: ListSides | None = None,
    sinkhorn_lists: int | None = None,
    one_to_one: bool = False,
    include_seeds: bool = False,
    direction: Direction = Direction.KG1_TO_KG2,
    reporter: Reporter = SILENT,
) -> Predictions:
    """Rank every non-seed KG2 entity for every non-seed KG1 entity (or the reverse).

    ``include_seeds`` keeps seed entities on both sides (a seed query could never find its
    partner otherwise). ``ranking`` None: the run's ``ranking.method``, so the lists rank as
    the run's test metrics did; Sinkhorn scores are the normalised weights (0-1). With
    ``csls``, ``csls_k`` 0 ranks by cosine: one pass, where CSLS takes two (its r_C needs
    every candidate against every query first). ``sinkhorn_sides`` and ``sinkhorn_lists``
    None: the run's (``queries`` with lists of 100 skips the candidates' search, for graphs
    where its time matters more than the accuracy it buys, docs/guide.md). ``one_to_one``
    turns the top-k lists into a greedy matching (:func:`mmalign.search.one_to_one`).
    """
    if top_k < 1:
        raise MMAlignError(f"--top-k must be at least 1, got {top_k}")
    folder, workspace, left, right, config = open_run(workdir, run)
    csls_k = csls_setting(config, csls_k)
    ranks = ranking_setting(config, ranking, sides=sinkhorn_sides, lists=sinkhorn_lists)
    sinkhorn = ranks.method is RankMethod.SINKHORN
    queries, candidates = np.arange(len(left)), np.arange(len(right))
    if not include_seeds:
        seeds = given_seeds(folder, workspace)
        queries, candidates = np.setdiff1d(queries, seeds[:, 0]), np.setdiff1d(candidates, seeds[:, 1])
    query_emb, cand_emb, query_kg, cand_kg = left, right, workspace.kg1, workspace.kg2
    if direction is Direction.KG2_TO_KG1:
        queries, candidates, query_emb, cand_emb, query_kg, cand_kg = (
            candidates, queries, right, left, cand_kg, query_kg,
        )
    if len(queries) == 0 or len(candidates) == 0:
        reporter.warn("nothing to rank: every entity of one side is a seed (use --include-seeds)")
    score = "Sinkhorn" if sinkhorn else f"CSLS k={csls_k}" if csls_k else "cosine"
    reporter.info(f"ranking {len(candidates):,} candidates for {len(queries):,} queries ({score}, top {top_k})")
    query_rows, candidate_rows = query_emb[torch.from_numpy(queries)], cand_emb[torch.from_numpy(candidates)]
    # The gathered rows are all the search reads: the whole tables go before it, not after.
    del left, right, query_emb, cand_emb
    if sinkhorn:
        scores, indices = search.sinkhorn_topk(
            query_rows, candidate_rows, top_k, lists=ranks.sinkhorn_lists, temperature=ranks.sinkhorn_temperature,
            iterations=ranks.sinkhorn_iterations, sides=ranks.sinkhorn_sides, ann_from=ann_setting(config),
            reporter=reporter,
        )
    else:
        scores, indices = search.topk(
            query_rows, candidate_rows, top_k, csls_k=csls_k, ann_from=ann_setting(config), reporter=reporter,
        )
    if one_to_one:
        rows, columns = search.one_to_one(scores, indices)
        reporter.info(f"1:1 matching: {len(rows):,} of {len(queries):,} queries matched")
    else:
        rows = torch.arange(len(queries)).repeat_interleave(scores.shape[1])
        columns = torch.arange(scores.shape[1]).repeat(len(queries))
    return Predictions(
        direction=direction,
        query_keys=query_kg.entities,
        candidate_keys=cand_kg.entities,
        query_ids=queries,
        candidate_ids=candidates,
        scores=scores,
        indices=indices,
        rows=rows,
        columns=columns,
        test_metrics=run_test_metrics(folder),
    )


def evaluate(
    workdir: Path,
    run: Path | None,
    gold: Path,
    *,
    all_candidates: bool = False,
    csls_k: int | None = None,
    ranking: RankMethod | None = None,
    skip_unknown: bool = False,
    reporter: Reporter = SILENT,
) -> dict[str, float | int]:
    """H@1/5/10, MRR, MR and count of the run's embeddings on a gold pair file.

    Default protocol as in the papers: each KG1 entity of the gold ranks the distinct gold
    KG2 entities, so the numbers compare with published tables; ``all_candidates`` ranks
    every KG2 entity instead (harder, closer to real use). One rank per gold pair.
    ``csls_k`` and ``ranking`` None: the run's own settings, so the run's test pairs give the
    numbers training reported.
    """
    _, workspace, left, right, config = open_run(workdir, run)
    pairs = read_pairs(gold, workspace, skip_unknown=skip_unknown, reporter=reporter)
    candidates = np.arange(len(right)) if all_candidates else gold_targets(pairs)
    return evaluate_pairs(left, right, pairs, candidates, csls_k=csls_setting(config, csls_k),
                          ranking=ranking_setting(config, ranking), reporter=reporter)


def run_test_metrics(folder: Path) -> dict[str, Any] | None:
    """The test metrics training stored in ``summary.json`` (None without --test or summary)."""
    path = folder / "summary.json"
    return read_json(path).get("test") if path.is_file() else None


def open_run(workdir: Path, run: Path | None) -> tuple[Path, Workspace, torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Run folder, workspace, checked embeddings (KG1, KG2) and the run's config.

    Every command that reads a run's embeddings (``predict``, ``evaluate``, ``link``) opens it
    here, so all of them refuse a run that no longer fits its workspace the same way.
    """
    folder = resolve_run(Path(workdir), run)
    workspace = Workspace.open(workdir)
    config = read_json(folder / "config.json")
    data = config.get("data")
    if data is not None and data != workspace.manifest.get("sources"):
        raise MMAlignError(
            "this run was trained on other input than the workspace holds now (re-ingested?); retrain", path=folder
        )
    left, right = load_embeddings(folder)
    for name, emb, kg in (("kg1", left, workspace.kg1), ("kg2", right, workspace.kg2)):
        if emb.dim() != 2 or len(emb) != len(kg.entities):
            raise MMAlignError(
                f"embeddings {name} have {tuple(emb.shape)} rows but the workspace has "
                f"{len(kg.entities):,} {name.upper()} entities; was it re-ingested after this run?",
                path=folder / "embeddings.safetensors",
            )
        # One reduction instead of an N × D mask: a NaN or infinity anywhere spoils the sum,
        # and unit rows cannot overflow it.
        if not bool(torch.isfinite(emb.sum())):
            raise MMAlignError(f"embeddings {name} contain NaN or infinity (did training diverge?)", path=folder)
    return folder, workspace, left.float(), right.float(), config


def csls_setting(config: dict[str, Any], csls_k: int | None) -> int:
    """``csls_k``, or the run's CSLS setting when None."""
    if csls_k is None:
        saved = _saved_settings(config)
        return saved.selection.csls if saved else DEFAULT_CSLS
    if csls_k < 0:
        raise MMAlignError(f"--csls must be 0 (cosine) or positive, got {csls_k}")
    return csls_k


def ranking_setting(config: dict[str, Any], method: RankMethod | None, *, sides: ListSides | None = None,
                    lists: int | None = None) -> RankingConfig:
    """The run's ranking with ``method``, ``sides`` and ``lists`` in place of its own where
    given (runs that name no settings ranked by CSLS)."""
    saved = _saved_settings(config)
    base = saved.ranking if saved else RankingConfig(method=RankMethod.CSLS)
    given = {"method": method, "sinkhorn_sides": sides, "sinkhorn_lists": lists}
    return dataclasses.replace(base, **{key: value for key, value in given.items() if value is not None})


def ann_setting(config: dict[str, Any]) -> int:
    """The run's ``compute.ann_from`` (today's default for a config that names no settings)."""
    saved = _saved_settings(config)
    return saved.compute.ann_from if saved else ComputeConfig.ann_from


def _saved_settings(config: dict[str, Any]) -> TrainConfig | None:
    """The settings a run's ``config.json`` holds, or None for one that names none (the oldest runs)."""
    return TrainConfig.load(config) if ("config" in config or "options" in config) else None
