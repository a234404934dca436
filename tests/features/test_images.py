"""Image modality: the active features read back, missing-image policies, end-to-end alignment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from samples import DIM, sample_files, sample_weights, sample_workspace, settings
from PIL import Image
from safetensors.torch import load_file

from mmalign.errors import MMAlignError
from mmalign.extract.images import extract_workspace_images
from mmalign.features import images as im
from mmalign.features.config import FeatureConfig
from mmalign.features.base import REGISTRY, FeatureContext

pytestmark = pytest.mark.filterwarnings("ignore:Sparse:UserWarning")


def test_builder_fills_missing_and_normalises(tmp_path: Path) -> None:
    workspace = sample_workspace(tmp_path / "work", sample_files(tmp_path))
    build = REGISTRY["image"]
    assert build is im.build
    assert build(FeatureContext(workspace, FeatureConfig())) is None  # nothing extracted yet
    extract_workspace_images(workspace, settings(sample_weights(tmp_path)))
    # kg1 entity 2 neighbours kg1 0 (twice) and kg1 1; entity 3 and kg2 1, 3 have no imaged neighbour
    neighbors = torch.sparse_coo_tensor(
        torch.tensor([[2, 0, 2, 1], [0, 2, 1, 2]]), torch.tensor([2.0, 2.0, 1.0, 1.0]), (8, 8)
    ).to_sparse_csr()
    feats = build(FeatureContext(workspace, FeatureConfig(), seed=3, neighbors=neighbors))
    raw = load_file(str(workspace.path / workspace.manifest["features"]["images"]["file"]))
    assert feats is not None and feats.matrix.shape == (8, DIM) and feats.matrix.dtype == torch.float32
    assert feats.present.tolist() == [True, True, False, False, True, False, True, False]
    assert torch.allclose(feats.matrix.norm(dim=1), torch.ones(8))
    expected = (2 * raw["kg1"][0].float() + raw["kg1"][1].float()) / 3
    assert torch.allclose(feats.matrix[2], expected / expected.norm(), atol=1e-6)
    assert torch.equal(feats.matrix[3], feats.matrix[5]) and torch.equal(feats.matrix[3], feats.matrix[7])
    assert feats.info["fallback"] == {"neighbor_mean": 1, "random": 3, "zeros": 0}
    assert feats.info["present"] == {"kg1": 2, "kg2": 2} and feats.info["dim"] == DIM
    again = build(FeatureContext(workspace, FeatureConfig(), seed=3, neighbors=neighbors))
    assert torch.equal(again.matrix, feats.matrix)  # seeded

    workspace.kg2.entities = ["x", "y", "z", "w"]  # as if re-ingested with other entities
    with pytest.raises(MMAlignError, match="extracted for other kg2 entities"):
        build(FeatureContext(workspace, FeatureConfig()))


def test_missing_image_policies() -> None:
    features = torch.tensor([[1.0, 2.0], [3.0, 6.0], [0.0, 0.0], [0.0, 0.0]])
    present = torch.tensor([True, True, False, False])
    out, counts = im.fill_missing(features, present, "zeros")
    assert torch.equal(out, features) and counts["zeros"] == 2
    out, counts = im.fill_missing(features, present, "random_per_entity", seed=1)
    assert not torch.equal(out[2], out[3]) and counts["random"] == 2 and torch.equal(out[:2], features[:2])
    out, counts = im.fill_missing(features, present, "neighbor_mean", neighbors=None, seed=1)
    assert torch.equal(out[2], out[3]) and counts == {"neighbor_mean": 0, "random": 2, "zeros": 0}
    with pytest.raises(MMAlignError, match="missing_image must be one of"):
        im.fill_missing(features, present, "average")


# --- end to end -----------------------------------------------------------------------------


def _star_kg(folder: Path, n: int, kg_seed: int) -> None:
    """A hub linked to n leaves, all alike; leaf i's image is pattern i with this KG's own noise."""
    (folder / "images").mkdir(parents=True)
    (folder / "triples.tsv").write_text("".join(f"hub\tlinks\te{i}\n" for i in range(n)))
    noise = np.random.default_rng(kg_seed)
    for i in range(n):
        grid = np.random.default_rng(1000 + i).integers(0, 256, (4, 4, 3)).repeat(16, 0).repeat(16, 1)
        pixels = np.clip(grid + noise.normal(0, 8, grid.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / "images" / f"e{i}.jpg", quality=90)


def test_images_align_entities_that_structure_cannot_tell_apart(tmp_path: Path) -> None:
    """Two star KGs: every leaf has the same structure, only its image tells it apart.

    Without images the leaves' embeddings differ only by their untrained entity vectors, so
    test H@1 is about chance (1/15); with images it is near 1 (0.87-1.0 over seeds 0-2).
    """
    from mmalign.ingest import ingest
    from mmalign.training import TrainConfig, train

    n = 40
    _star_kg(tmp_path / "kg1", n, kg_seed=1)
    _star_kg(tmp_path / "kg2", n, kg_seed=2)
    work = tmp_path / "work"
    ingest([tmp_path / "kg1", tmp_path / "kg2"], work)
    entry = extract_workspace_images(work, settings("random"))
    assert entry["counts"]["entities_with_images"] == {"kg1": n, "kg2": n}

    def pairs(name: str, ids: range, extra: str = "") -> Path:
        path = tmp_path / name
        path.write_text("".join(f"e{i}\te{i}\n" for i in ids) + extra)
        return path

    seeds = pairs("seeds.tsv", range(0, 15), extra="hub\thub\n")
    valid, test = pairs("valid.tsv", range(15, 25)), pairs("test.tsv", range(25, n))
    hits = {}
    for modalities in (["relation", "attribute"], ["relation", "attribute", "image"]):
        options = TrainConfig.build(dict(
            epochs=20, lr=5e-3, eval_every=10, min_epochs=0, iterative=False, dim=32, modal_dim=32,
            precision="fp32", seed=0, modalities=modalities, members=1,
        ))
        result = train(work, seeds, options, valid=valid, test=test)
        assert ("image" in result.modalities) == ("image" in modalities)
        hits[modalities[-1]] = result.test["hits@1"]
    assert hits["image"] >= 0.7 and hits["image"] >= hits["attribute"] + 0.5, hits
