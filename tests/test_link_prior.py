"""The degree prior of ``mmalign link``: the seeds' share by degree, and what it does to the confidences."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from typer.testing import CliRunner

from mmalign.atomic import atomic_write_json
from mmalign.cli import app
from mmalign.ingest import ingest
from mmalign.links import LinkConfig, link
from mmalign.links.linker import calibration_file
from mmalign.links.prior import MIN_SEEDS, DegreeShape, PairShape, Prior, _non_decreasing, degree_classes, fit_shape
from mmalign.pairs import write_pairs
from mmalign.report import RecordingReporter
from mmalign.run import atomic_save_tensors, new_run, pairs_file
from mmalign.training import TrainConfig


def test_degree_classes_double_after_three() -> None:
    assert degree_classes(0).tolist() == [0, 1, 2, 3]
    assert degree_classes(40).tolist() == [0, 1, 2, 3, 4, 8, 16, 32]


def test_pool_adjacent_violators() -> None:
    fitted = _non_decreasing(np.array([0.1, 0.5, 0.3, 0.3, 0.9]), np.array([1.0, 1.0, 2.0, 1.0, 1.0]))
    assert np.allclose(fitted, [0.1, 0.35, 0.35, 0.35, 0.9])
    assert np.all(np.diff(fitted) >= 0)


def test_shape_follows_the_share_with_a_counterpart() -> None:
    """Seeds drawn at random from the matched entities, whose share grows with degree."""
    rng = np.random.default_rng(0)
    degree = np.minimum(rng.zipf(1.8, 40_000), 500)
    truth = np.select([degree == 1, degree < 4], [0.1, 0.6], 1.0)
    matched = np.nonzero(rng.random(len(degree)) < truth)[0]
    # A small class of hubs that are all seeds must not set the reference alone.
    degree[matched[:5]] = 10_000
    seeds = np.r_[rng.choice(matched[5:], size=int(0.3 * len(matched)), replace=False), matched[:5]]
    shape = fit_shape(degree, seeds)
    assert abs(shape.of(np.array([1]))[0] - 0.1) < 0.02
    assert abs(shape.of(np.array([2]))[0] - 0.6) < 0.05
    assert np.all(shape.of(np.array([8, 64, 10_000])) > 0.95)
    assert shape.seeds == len(seeds)


def test_too_few_seeds_give_a_uniform_shape() -> None:
    degree = np.r_[np.ones(500, dtype=np.int64), np.full(500, 8)]
    shape = fit_shape(degree, np.arange(500, 500 + MIN_SEEDS - 1))
    assert shape.seeds == 0 and np.all(shape.of(degree) == 1.0)
    assert fit_shape(degree, np.arange(500, 500 + MIN_SEEDS)).of(np.array([1]))[0] == 0.0


def test_a_pair_takes_the_smaller_of_its_entities_shapes() -> None:
    kg1 = DegreeShape(np.array([1, 2, 4]), np.array([0.1, 0.6, 1.0]), 500)
    kg2 = DegreeShape(np.array([1, 4]), np.array([0.3, 1.0]), 500)
    shape = PairShape(kg1, kg2)
    assert shape.of(np.array([1, 2, 8, 8]), np.array([8, 1, 1, 8])).tolist() == [0.1, 0.3, 0.3, 1.0]
    assert PairShape.from_dict(shape.to_dict()).of(np.array([3]), np.array([5])).tolist() == [0.6]


MATCHED, UNMATCHED = 300, 100
SEEDS, VALID = range(0, 100), range(100, 150)


def kg(folder: Path, prefix: str, rng: np.random.Generator) -> Path:
    """Matched entities in a ring of degree 6; each unmatched one hangs off one of them (degree 1)."""
    folder.mkdir()
    lines = [f"{prefix}{i}\tr\t{prefix}{(i + step) % MATCHED}" for i in range(MATCHED) for step in (1, 2, 3)]
    lines += [f"{prefix}{MATCHED + i}\tr\t{prefix}{rng.integers(MATCHED)}" for i in range(UNMATCHED)]
    (folder / "triples.tsv").write_text("\n".join(lines) + "\n")
    return folder


def make_run(root: Path) -> Path:
    """a_i ↔ b_i for i < 300; the 100 unmatched a_j embed next to unmatched b_j, as a true pair would."""
    rng = np.random.default_rng(0)
    work = root / "work"
    ws = ingest([kg(root / "kg1", "a", rng), kg(root / "kg2", "b", rng)], work).workspace
    n = MATCHED + UNMATCHED
    g = torch.Generator().manual_seed(0)
    base = torch.randn(n, 16, generator=g)
    noise = torch.cat([torch.linspace(0.1, 0.6, MATCHED), torch.full((UNMATCHED,), 0.1)])[:, None]
    kg1, kg2 = base + noise * torch.randn(n, 16, generator=g), base + noise * torch.randn(n, 16, generator=g)
    order1, order2 = ws.kg1.entity_index(), ws.kg2.entity_index()
    embed1, embed2 = torch.empty_like(kg1), torch.empty_like(kg2)
    embed1[[order1[f"a{i}"] for i in range(n)]] = kg1
    embed2[[order2[f"b{i}"] for i in range(n)]] = kg2
    run = new_run(work)
    atomic_write_json(run / "config.json", {"config": TrainConfig.build({"csls": 3}).to_dict(), "data": ws.manifest["sources"]})
    atomic_save_tensors(run / "embeddings.safetensors", {"kg1": torch.nn.functional.normalize(embed1, dim=1),
                                                         "kg2": torch.nn.functional.normalize(embed2, dim=1)})
    for split, ids in (("train", SEEDS), ("valid", VALID)):
        write_pairs(pairs_file(run, split), np.array([(order1[f"a{i}"], order2[f"b{i}"]) for i in ids]), ws)
    return work


def test_the_degree_prior_doubts_entities_of_degrees_the_seeds_shun(tmp_path: Path) -> None:
    work = make_run(tmp_path)
    confidences, estimated = {}, {}
    for prior in Prior:
        reporter = RecordingReporter()
        links = link(work, None, LinkConfig(prior=prior, include_rejected=True), reporter)
        keys = [links.kg1_keys[i] for i in links.kg1]
        unmatched = np.array([int(key[1:]) >= MATCHED for key in keys])
        right = np.array([t >= 0 and links.kg2_keys[t][1:] == key[1:] for key, t in zip(keys, links.kg2.tolist())]) & ~unmatched
        confidences[prior] = (links.confidence[unmatched], np.mean((links.confidence - right) ** 2))
        saved = json.loads(calibration_file(work / "runs" / "latest").read_text())
        assert saved["key"]["prior"] == prior.value
        estimated[prior] = saved["population"]["estimated_unmatched"]
        log = " ".join(reporter.infos)
        if prior is Prior.DEGREE:
            shape = saved["calibrator"]["shape"]
            assert shape["kg1"]["seeds"] == shape["kg2"]["seeds"] == len(SEEDS) + len(VALID)
            assert "prior by degree from 150 seed pairs" in log and "KG1 degree 1-3: 0.00" in log
        else:
            assert "the same prior at every degree" in log
    # 100 of the 250 non-seed entities have no counterpart, and the features alone take them for pairs.
    assert estimated[Prior.DEGREE] >= 0.4 > estimated[Prior.FLAT]
    assert confidences[Prior.FLAT][0].mean() > 0.5
    assert confidences[Prior.DEGREE][0].max() < 0.01
    # Brier score over every non-seed entity (a link of an unmatched one is wrong).
    assert confidences[Prior.DEGREE][1] < 0.5 * confidences[Prior.FLAT][1]


def test_cli_prior_choice_is_checked(tmp_path: Path) -> None:
    work = make_run(tmp_path)
    result = CliRunner().invoke(app, ["link", "-w", str(work), "--prior", "degrees"])
    assert result.exit_code == 2 and "degrees" in result.stderr and result.stdout == ""
    result = CliRunner().invoke(app, ["link", "-w", str(work), "--prior", "flat", "-q"])
    assert result.exit_code == 0, result.output
