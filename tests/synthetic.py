"""Generated KG pairs for tests: one hidden graph, two renamed copies as TSV KG folders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class SyntheticPair:
    kg1: Path
    kg2: Path
    seeds: Path
    test: Path
    pairs: list[tuple[str, str]]


def make_pair(root: Path, n: int = 80, n_relations: int = 4, n_triples: int = 320, seed_share: float = 0.3,
              seed: int = 0, structure: bool = True) -> SyntheticPair:
    """Two TSV KG folders whose entities correspond one-to-one (``e12`` ↔ ``E12x``).

    With ``structure=True`` KG2 is an isomorphic copy of KG1 (renamed entities and relations);
    otherwise both KGs get independent random graphs, so structure carries no signal.
    """
    rng = np.random.default_rng(seed)

    def graph() -> np.ndarray:
        heads = rng.integers(0, n, n_triples)
        tails = (heads + rng.integers(1, n, n_triples)) % n
        return np.unique(np.stack([heads, rng.integers(0, n_relations, n_triples), tails], 1), axis=0)

    first = graph()
    second = first if structure else graph()
    kg1, kg2 = root / "kg1", root / "kg2"
    for folder in (kg1, kg2):
        folder.mkdir(parents=True)
    (kg1 / "triples.tsv").write_text("".join(f"e{h}\tr{r}\te{t}\n" for h, r, t in first))
    (kg2 / "triples.tsv").write_text("".join(f"E{h}x\tREL{r}\tE{t}x\n" for h, r, t in second))
    present = sorted(set(first[:, [0, 2]].ravel()) & set(second[:, [0, 2]].ravel()))
    order = rng.permutation(present)
    pairs = [(f"e{i}", f"E{i}x") for i in order]
    k = int(len(pairs) * seed_share)
    seeds, test = root / "seeds.tsv", root / "test.tsv"
    seeds.write_text("".join(f"{a}\t{b}\n" for a, b in pairs[:k]))
    test.write_text("".join(f"{a}\t{b}\n" for a, b in pairs[k:]))
    return SyntheticPair(kg1, kg2, seeds, test, pairs)
