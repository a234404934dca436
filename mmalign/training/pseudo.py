"""Iterative training's pseudo-labelling: mutual nearest neighbours that stay mutual over a window.

From ``start``, every ``check_every`` epochs the not-yet-paired entities are searched for
mutual nearest neighbours (CSLS by default); pairs that were mutual at every check of a
``window``-epoch window become pseudo pairs at its end (loginmea-spec §3.4). Windows follow
each other; with ``slide`` a window ends at every check instead, so each search renews the
pairs from the last ``window // check_every`` searches. With ``refresh`` (the default) the
new pairs replace the last ones, so a wrong pair leaves once the model stops agreeing with
it; the authors' code only adds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mmalign.report import SILENT, Reporter
from mmalign.search import mutual_nearest
from mmalign.search.mutual import CANDIDATES, mutual_from_lists
from mmalign.training.partitions import sides_by_part
from mmalign.training.unpaired import UnpairedLists
from mmalign.settings import Choice, Section, at_least


class PseudoPool(Choice):
    """Where pseudo pairs are searched."""

    ALL = "all"  # every entity outside the seeds: a real run (the authors' code)
    # Only the --test pairs' entities: RREA's published protocol, for comparison only (it uses
    # which entities have a partner, never which partner).
    TEST = "test"

    @classmethod
    def label(cls, key: str) -> str:
        return "pseudo-pair pool"


class PseudoScore(Choice):
    CSLS = "csls"  # with the selection's CSLS k: discounts hubs that are near everything
    COSINE = "cosine"

    @classmethod
    def label(cls, key: str) -> str:
        return "pseudo-pair score"


@dataclass(frozen=True)
class PseudoConfig(Section):
    """Iterative training (``--iterative/--no-iterative`` and the window)."""

    iterative: bool = True
    # Searches at epochs 20, 30, 40, ...; with ``slide`` the pairs mutual at both of the last
    # two searches (20 epochs of ``window``) are renewed at every one from epoch 30. A model
    # reaches by epoch 60-80 the test H@1 it had at 100 with pairs renewed at every second
    # search only, and ends higher (docs/benchmarks.md, "When training stops"); validation
    # H@1 on the seeds alone plateaus long before the spec's 50 + 50-epoch window lets its
    # first pairs join ("Early choices").
    start: int = 10
    check_every: int = 10
    window: int = 20
    slide: bool = True
    pool: PseudoPool = PseudoPool.ALL
    # Higher zh_en test H@1 than adding (docs/benchmarks.md, "Early choices").
    refresh: bool = True
    score: PseudoScore = PseudoScore.CSLS

    def check(self) -> None:
        at_least("start", self.start, 0)
        at_least("check_every", self.check_every, 1)
        at_least("window", self.window, self.check_every)


@dataclass
class PseudoLabeller:
    """The pseudo pairs and the current window's earlier mutual pairs; checkpointed with the run."""

    config: PseudoConfig
    csls_k: int
    precision: str  # of the search's block products (bf16 | fp32)
    ann_from: int  # approximate search from this many entities per side (0: never)
    reporter: Reporter = SILENT
    pairs: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    # The mutual pairs of the window's earlier checks, oldest first (without ``slide``: their
    # intersection, one set).
    recent: list[set[tuple[int, int]]] = field(default_factory=list)

    def due(self, epoch: int) -> bool:
        """Whether the check after ``epoch`` (1-based) searches."""
        c = self.config
        return c.iterative and epoch > c.start and epoch % c.check_every == 0

    @property
    def list_length(self) -> int:
        """How many of each row's best cosines the search keeps (:func:`~mmalign.search.mutual_nearest`)."""
        return max(CANDIDATES, self.csls_k)

    def reads(self, lists: UnpairedLists | None, part_of: np.ndarray | None) -> bool:
        """Whether the search can take its mutual pairs from ``lists`` instead of a pass of its
        own: they hold the entities it searches (one part, the pool ``all``, ``refresh``). They
        are exact, so they serve above ``ann_from`` too, where the search would approximate."""
        c = self.config
        return lists is not None and part_of is None and c.refresh and c.pool is PseudoPool.ALL

    def update(self, embeddings: torch.Tensor, epoch: int, seeds: np.ndarray, n1: int, n_entities: int,
               test: np.ndarray | None, part_of: np.ndarray | None = None, lists: UnpairedLists | None = None) -> None:
        """Search the not-yet-paired entities after ``epoch`` and, at a window's end, renew the pairs.

        ``embeddings``: L2-normalised rows of every entity (global ids); ``seeds``: the training
        pairs, whose entities are never searched; ``part_of``: each entity's part under
        partitioned training, where pairs are searched within each part only; ``lists``: the
        unpaired entities' lists from this check's validation, read instead of searching
        where they serve (:meth:`reads`).
        """
        c = self.config
        used = seeds if c.refresh else np.concatenate([seeds, self.pairs])
        pool = test if c.pool is PseudoPool.TEST else None
        left = np.setdiff1d(np.arange(n1) if pool is None else pool[:, 0], used[:, 0])
        right = np.setdiff1d(np.arange(n1, n_entities) if pool is None else pool[:, 1], used[:, 1])
        if len(left) == 0 or len(right) == 0:
            return
        csls_k = self.csls_k if c.score is PseudoScore.CSLS else 0
        found: set[tuple[int, int]] = set()
        if (lists is not None and self.reads(lists, part_of) and np.array_equal(left, lists.left)
                and np.array_equal(right, lists.right)):
            rows, cols = mutual_from_lists(embeddings[torch.from_numpy(left)], embeddings[torch.from_numpy(right)],
                                           lists.lists, csls_k=csls_k, dtype=lists.dtype)
            found = set(zip(left[rows.numpy()].tolist(), right[cols.numpy()].tolist()))
        else:
            for lefts, rights in sides_by_part(part_of, left, right):
                if len(lefts) and len(rights):
                    rows, cols = mutual_nearest(embeddings[lefts], embeddings[rights], precision=self.precision,
                                                csls_k=csls_k, ann_from=self.ann_from, reporter=self.reporter)
                    found |= set(zip(lefts[rows.numpy()].tolist(), rights[cols.numpy()].tolist()))
        if c.slide:
            window = self.recent + [found]
            ready = len(window) == max(c.window // c.check_every, 1)
            self.recent = window[1:] if ready else window
            stable = set.intersection(*window)
        else:
            window_start = (epoch - c.check_every) % c.window == 0
            stable = found if window_start or not self.recent else self.recent[0] & found
            ready = epoch % c.window == 0
            self.recent = [] if ready or not stable else [stable]  # an empty intersection starts afresh
        if ready and stable:
            added = np.asarray(sorted(stable), dtype=np.int64)
            if c.refresh:
                self.pairs = added
                self.reporter.info(f"epoch {epoch}: {len(added):,} pseudo pairs replace the last ones")
            else:
                self.pairs = np.concatenate([self.pairs, added])
                self.reporter.info(f"epoch {epoch}: added {len(added):,} pseudo pairs ({len(self.pairs):,} in all)")

    def state(self) -> dict[str, torch.Tensor]:
        """The pairs, and each earlier check's mutual pairs as rows (check, left, right)."""
        rows = [(i, a, b) for i, found in enumerate(self.recent) for a, b in sorted(found)]
        return {"pseudo": torch.from_numpy(self.pairs), "recent": torch.tensor(rows, dtype=torch.int64).reshape(-1, 3)}

    def load_state(self, tensors: dict[str, Any]) -> None:
        """From :meth:`state`; a checkpoint written before ``slide`` holds one ``candidates`` set."""
        self.pairs = tensors["pseudo"].numpy().astype(np.int64).reshape(-1, 2)
        if "recent" in tensors:
            rows = tensors["recent"].reshape(-1, 3).tolist()
            self.recent = [set() for _ in range(1 + max((r[0] for r in rows), default=-1))]
            for i, a, b in rows:
                self.recent[i].add((a, b))
        else:
            candidates = {tuple(p) for p in tensors["candidates"].tolist()}
            self.recent = [candidates] if candidates else []
