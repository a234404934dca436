"""Partitioned training: METIS parts that keep seed pairs together, part-wise steps, part-wise search."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mmalign.cli import app
from mmalign.hardware import choose_precision
from mmalign.errors import MMAlignError
from mmalign.graph import build_graph
from mmalign.ingest import ingest
from mmalign.model.loginmea import LoginMEA
from mmalign.report import SILENT
from mmalign.training import TrainConfig, distributed, train
from mmalign.training.inputs import Inputs, build_inputs
from mmalign.training.loop import Trainer
from mmalign.training.partitions import STRATEGIES, Partition, build_partition, partition_entities
from mmalign.training.splits import make_splits
from mmalign.workspace import Workspace
from synthetic import make_pair

pytest.importorskip("pymetis")

SMALL = dict(dim=32, modal_dim=32, rank=4, epochs=60, eval_every=10, start=20, check_every=5, window=10,
             min_epochs=60, lr=0.01, valid_fraction=0.2, precision="fp32", members=1)


def communities(n_groups: int = 4, size: int = 30, seed: int = 0) -> tuple[np.ndarray, int, int]:
    """Two copies (KG1: ids 0..n-1, KG2: n..2n-1) of one graph of dense groups joined by one edge each.

    Returns global triples, the KG1 entity count and the entity count.
    """
    rng = np.random.default_rng(seed)
    n = n_groups * size
    triples = []
    for g in range(n_groups):
        members = np.arange(g * size, (g + 1) * size)
        for _ in range(4 * size):
            h, t = rng.choice(members, 2, replace=False)
            triples.append((h, int(rng.integers(0, 3)), t))
        triples.append((g * size, 0, ((g + 1) % n_groups) * size))
    first = np.asarray(triples, dtype=np.int64)
    second = first + np.array([n, 3, n])
    return np.concatenate([first, second]), n, 2 * n


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_parts_keep_seed_pairs_together_and_follow_the_communities(strategy: str) -> None:
    triples, n1, n = communities()
    seeds = np.stack([np.arange(0, n1, 3), np.arange(0, n1, 3) + n1], 1)  # a third of the entities
    part_of = STRATEGIES[strategy](triples, n, n1, seeds, 4, 0)
    assert (part_of[seeds[:, 0]] == part_of[seeds[:, 1]]).all()
    # Every entity not a seed lands with its counterpart: the groups are what METIS cuts along.
    others = np.setdiff1d(np.arange(n1), seeds[:, 0])
    assert (part_of[others] == part_of[others + n1]).all()
    assert np.mean(part_of[triples[:, 0]] != part_of[triples[:, 2]]) < 0.05  # the joining edges, of some 960
    for p in range(4):  # each part holds a group of each KG
        assert np.sum(part_of[:n1] == p) == np.sum(part_of[n1:] == p) == 30
    assert (STRATEGIES[strategy](triples, n, n1, seeds, 4, 0) == part_of).all()


def test_the_strategy_keeping_more_validation_pairs_together_is_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    triples, n1, n = communities()
    seeds = np.stack([np.arange(0, n1, 3), np.arange(0, n1, 3) + n1], 1)
    valid = np.array([[1, n1 + 1], [2, n1 + 2]])
    together = np.zeros(n, dtype=np.int64)
    apart = np.zeros(n, dtype=np.int64)
    apart[n1:] = 1
    monkeypatch.setitem(STRATEGIES, "contracted", lambda *args: apart)
    monkeypatch.setitem(STRATEGIES, "following", lambda *args: together)
    part_of, strategy = partition_entities(triples, n, n1, seeds, valid, 2, seed=0)
    assert strategy == "following" and part_of is together
    monkeypatch.setitem(STRATEGIES, "following", lambda *args: apart)
    assert partition_entities(triples, n, n1, seeds, valid, 2, seed=0)[1] == "contracted"  # a tie: the first


def test_pairs_across_parts_are_dropped_from_the_step() -> None:
    partition = Partition(part_of=np.array([0, 0, 1, 1, 0, 1, 1, 0]), parts=["a", "b"], cut=0.0)  # type: ignore[list-item]
    pairs = np.array([[0, 4], [1, 5], [2, 6], [3, 7]])
    groups = partition.group(pairs)
    assert [g[0] for g in groups] == ["a", "b"]
    assert groups[0][1].tolist() == [[0, 4]] and groups[1][1].tolist() == [[2, 6]]
    assert partition.within(pairs) == 0.5


def test_a_part_forward_equals_the_whole_graph_forward_where_no_edge_is_cut() -> None:
    """Parts that are whole components: the part's rows of the full forward, bit for bit.

    Checks the local numbering of the part's triples, its feature rows and entity rows.
    """
    triples, n1, n = communities(n_groups=2, size=20)
    # Two components per KG: drop the joining edges.
    keep = np.ones(len(triples), dtype=bool)
    for copy in (0, n1):
        joins = (triples[:, 0] - copy) // 20 != (triples[:, 2] - copy) // 20
        keep &= ~joins
    triples = triples[keep]
    graph = build_graph(triples, n, 6)
    features = torch.randn(n, 7)

    class Feature:
        matrix, dim = features, 7

    inputs = Inputs(graph, [Feature()], [features], n1, n, 6, triples)  # type: ignore[list-item]
    seeds = np.stack([np.arange(0, n1, 2), np.arange(0, n1, 2) + n1], 1)
    partition = build_partition(inputs, seeds, seeds[:3], 2, seed=0, reporter=SILENT)
    assert partition.cut == 0.0
    settings = TrainConfig.build({"dim": 16, "modal_dim": 16, "rank": 2}).resolved()
    torch.manual_seed(0)
    model = LoginMEA(settings.model, [7], n, 6).eval()
    with torch.no_grad():
        whole = model(inputs.matrices, graph)
        for part in partition.parts:
            rows = torch.from_numpy(part.entities)
            own = torch.cat(model.forward_blocks(part.matrices, part.graph, rows), dim=1)
            torch.testing.assert_close(own, whole[rows], rtol=1e-5, atol=1e-6)


@pytest.fixture()
def workspace(tmp_path: Path):
    pair = make_pair(tmp_path / "data", n=120, n_triples=480)
    work = tmp_path / "work"
    ingest([pair.kg1, pair.kg2], work)
    return work, pair


def test_partitioned_training_aligns_and_searches_within_parts(workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two parts of a random graph (no communities, so many edges are cut) still align."""
    work, pair = workspace
    searched: list[tuple[int, int]] = []
    from mmalign.training import pseudo

    original = pseudo.mutual_nearest

    def spy(left, right, **kwargs):
        searched.append((len(left), len(right)))
        return original(left, right, **kwargs)

    monkeypatch.setattr(pseudo, "mutual_nearest", spy)
    result = train(work, pair.seeds, TrainConfig.build({**SMALL, "partitions": 2}), test=pair.test)
    assert result.test["hits@1"] >= 0.8, result.test
    # Each search is one part's share of the unpaired entities of a side, never all of them.
    unpaired = 120 - int(len(result.members[0].folder.parent.parent.joinpath("pairs", "train.tsv").read_text().splitlines()) - 1)  # less the header
    assert searched and all(max(left, right) < 0.75 * unpaired for left, right in searched), (searched, unpaired)
    config = (result.run_dir / "config.json").read_text()
    assert '"partitions": 2' in config
    record = json.loads((result.run_dir / "summary.json").read_text())["partition"]
    assert record["parts"] == 2 and record["strategy"] in STRATEGIES and 0 < record["triples_cut"] < 1
    assert 0 < record["validation_within"] <= 1 and record["smallest"] + record["largest"] == 240


def test_partitioned_training_is_deterministic(workspace) -> None:
    work, pair = workspace
    settings = TrainConfig.build({**SMALL, "partitions": 3, "epochs": 30, "min_epochs": 30})
    first = train(work, pair.seeds, settings, test=pair.test)
    second = train(work, pair.seeds, settings, test=pair.test)
    from safetensors.torch import load_file

    a = load_file(str(first.run_dir / "embeddings.safetensors"))
    b = load_file(str(second.run_dir / "embeddings.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_partitions_below_one_is_a_clear_error(workspace) -> None:
    work, pair = workspace
    outcome = CliRunner().invoke(app, ["train", "--seeds", str(pair.seeds), "-w", str(work), "--partitions", "0"])
    assert outcome.exit_code == 2
    assert "partitions" in outcome.output and "Traceback" not in outcome.output


def test_without_pymetis_partitioned_training_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_pymetis(name, *args, **kwargs):
        if name == "pymetis":
            raise ImportError("no pymetis")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pymetis)
    triples, n1, n = communities()
    with pytest.raises(MMAlignError, match=r"pip install 'mmalign\[scale\]'"):
        partition_entities(triples, n, n1, np.zeros((0, 2), dtype=np.int64), np.zeros((0, 2), dtype=np.int64), 2, seed=0)


def test_ranks_run_only_their_parts_and_their_gradients_sum_to_one_process(workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """Data-parallel over parts, without processes: each fake rank's step, collective left out.

    One chunk per part (batch larger than any part's pairs), two parts, two ranks: each rank
    runs one part's forward, and the two ranks' gradients add up to one process's. The real
    collectives are tested under torchrun in ``test_distributed.py``.
    """
    work, pair = workspace
    settings = TrainConfig.build({**SMALL, "partitions": 2, "batch_size": 1000}).resolved()
    ws = Workspace.open(work)
    splits = make_splits(ws, pair.seeds, valid=None, valid_fraction=0.2, valid_max=5000, test=None, seed=1, skip_unknown=False, reporter=SILENT)
    cpu = torch.device("cpu")
    inputs = build_inputs(ws, settings.features, settings.seed, cpu, SILENT)
    partition = build_partition(inputs, splits.train, splits.valid, 2, settings.seed, SILENT)

    def one_step(rank: int | None, world: int = 2) -> tuple[dict[str, torch.Tensor], int]:
        torch.manual_seed(0)
        model = LoginMEA(settings.model, [f.dim for f in inputs.features], inputs.n_entities, inputs.n_relations, inputs.direct)
        trainer = Trainer(model, inputs, splits, settings, work, choose_precision("fp32", cpu), cpu, SILENT, partition)
        monkeypatch.setattr(trainer.optimizer, "step", lambda: None)  # keep the gradients, change nothing
        forwards = []
        original = model.forward_blocks
        monkeypatch.setattr(model, "forward_blocks", lambda *args: forwards.append(1) or original(*args))
        if rank is not None:
            monkeypatch.setattr(distributed, "active", lambda: True)
            monkeypatch.setattr(distributed, "my_chunks", lambda n: list(range(rank, n, world)))
            monkeypatch.setattr(distributed, "all_reduce_gradients", lambda parameters, total, device: total)
        trainer.step()
        monkeypatch.undo()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}, len(forwards)

    whole, forwards = one_step(None)
    assert forwards == 2
    (first, forwards_0), (second, forwards_1) = one_step(0), one_step(1)
    assert forwards_0 == forwards_1 == 1
    assert whole.keys() == first.keys() == second.keys()
    for name in whole:
        torch.testing.assert_close(first[name] + second[name], whole[name], rtol=1e-5, atol=1e-7)
    # A third rank of three has no chunk: no forward, zero gradients for the sum (not None).
    idle, forwards_2 = one_step(2, world=3)
    assert forwards_2 == 0 and idle.keys() == whole.keys() and all(not g.any() for g in idle.values())
