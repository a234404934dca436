"""Bag-of-relations features: top-K by frequency, counts or marks, head and tail merged or split."""

from __future__ import annotations

import numpy as np
import pytest

from mmalign.errors import MMAlignError
from mmalign.features.bags import relation_bag
from mmalign.features.config import FeatureConfig
from mmalign.features.base import FeatureContext
from mmalign.training import TrainConfig

# Global ids: entities 0-3 (KG1: 0-1, KG2: 2-3), relations 0-2. Relation 0 is used three
# times, relation 1 twice, relation 2 once.
TRIPLES = np.array([[0, 0, 1], [0, 0, 1], [1, 0, 0], [2, 1, 3], [3, 1, 2], [2, 2, 3]])


def _bag(**options: object) -> np.ndarray:
    options.setdefault("bag_size", 3)
    ctx = FeatureContext(workspace=None, config=FeatureConfig(**options), n_kg1=2, n_kg2=2, triples=TRIPLES, n_relations=3)
    features = relation_bag(ctx)
    assert features is not None
    return features.matrix.to_dense().numpy()


def test_merged_counts_heads_and_tails_in_one_column() -> None:
    assert _bag(relation_direction="merged").tolist() == [[3, 0, 0], [3, 0, 0], [0, 2, 1], [0, 2, 1]]


def test_split_keeps_heads_then_tails() -> None:
    bag = _bag()  # split is the default
    assert bag.shape == (4, 6)
    # Entity 0 is the head of relation 0 twice and its tail once; entity 3 is a tail twice.
    assert bag[0].tolist() == [2, 0, 0, 1, 0, 0]
    assert bag[3].tolist() == [0, 1, 0, 0, 1, 1]
    assert np.array_equal(bag[:, :3] + bag[:, 3:], _bag(relation_direction="merged"))


def test_top_k_and_binary() -> None:
    assert _bag(bag_size=1, relation_direction="merged").tolist() == [[3], [3], [0], [0]]  # relation 0 is the most frequent
    assert _bag(bag_size=2, relation_values="binary")[0].tolist() == [1, 0, 1, 0]


@pytest.mark.parametrize(("option", "value"), [("relation_direction", "both"), ("relation_values", "tfidf")])
def test_unknown_bag_options_are_user_errors(option: str, value: str) -> None:
    with pytest.raises(MMAlignError, match=f"unknown {option.replace('_', ' ')} '{value}'"):
        TrainConfig.build({option: value})
