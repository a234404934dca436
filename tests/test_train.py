"""Training end to end on generated KGs: alignment, determinism, resume, errors."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from mmalign.cli import app
from mmalign.errors import MMAlignError
from mmalign.ingest import ingest
from mmalign.report import SILENT, RecordingReporter
from mmalign.train import Splits, Trainer, TrainOptions, make_splits, resume, train
from mmalign.workspace import Workspace
from synthetic import make_pair

SMALL = dict(dim=32, modal_dim=32, rank=4, epochs=60, eval_every=10, il_start=20, il_check=5, il_window=10,
             min_epochs=60, lr=0.01, valid_fraction=0.2, precision="fp32", members=1)


@pytest.fixture()
def workspace(tmp_path: Path):
    pair = make_pair(tmp_path / "data")
    work = tmp_path / "work"
    ingest([pair.kg1, pair.kg2], work)
    return work, pair


def _trainer(workspace, **overrides) -> tuple[Trainer, Splits]:
    """A Trainer on the generated pair with the SMALL options (plus ``overrides``), not yet trained."""
    work, pair = workspace
    ws = Workspace.open(work)
    options = TrainOptions(**{**SMALL, **overrides}).resolved()
    splits = make_splits(ws, pair.seeds, valid=None, valid_fraction=0.2, test=None, seed=1, skip_unknown=False, reporter=SILENT)
    return Trainer(ws, splits, options, work / "scratch", SILENT), splits


def test_isomorphic_graphs_align_perfectly(workspace) -> None:
    work, pair = workspace
    result = train(work, pair.seeds, TrainOptions(**SMALL), test=pair.test)
    assert result.test["hits@1"] == 1.0, result.test
    run = result.run_dir
    for name in ("config.json", "checkpoint.safetensors", "best.safetensors", "metrics.jsonl", "embeddings.safetensors", "summary.json"):
        assert (run / name).is_file(), name
    assert (work / "runs" / "latest").resolve() == run.resolve()
    embeddings = load_file(str(run / "embeddings.safetensors"))
    assert embeddings["kg1"].shape[0] == 80 or embeddings["kg1"].shape[0] > 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["hits@1"] == 1.0 and "relation" in summary["modalities"]
    assert {"attribute", "image", "name"} <= set(summary["skipped_modalities"])  # none in these KGs
    evaluations = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in evaluations if e["split"] == "valid"] == [10, 20, 30, 40, 50, 60]


def test_config_records_the_precision_chosen_and_why(workspace) -> None:
    work, pair = workspace
    reporter = RecordingReporter()
    result = train(work, pair.seeds, TrainOptions(**dict(SMALL, epochs=2, min_epochs=0, precision="auto")), reporter=reporter)
    config = json.loads((result.run_dir / "config.json").read_text())
    chosen = config["precision"]["chosen"]
    assert config["precision"]["requested"] == "auto" and chosen in ("bf16", "fp32") and config["precision"]["why"]
    assert config["options"]["precision"] == chosen  # what the run computed with, so a resume repeats it
    assert any(line.startswith(f"precision: {chosen} (") for line in reporter.infos)


def test_same_seed_gives_identical_embeddings(workspace) -> None:
    work, pair = workspace
    options = dict(SMALL, epochs=12, min_epochs=0)
    first = train(work, pair.seeds, TrainOptions(**options))
    second = train(work, pair.seeds, TrainOptions(**options))
    a = load_file(str(first.run_dir / "embeddings.safetensors"))
    b = load_file(str(second.run_dir / "embeddings.safetensors"))
    assert first.run_dir != second.run_dir
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in ("kg1", "kg2"))


def test_resume_continues_to_the_same_result(workspace) -> None:
    work, pair = workspace
    full = train(work, pair.seeds, TrainOptions(**dict(SMALL, epochs=30, min_epochs=0)))
    # Stop a run at epoch 20 (its last checkpoint), then resume it with a budget of 30.
    partial = train(work, pair.seeds, TrainOptions(**dict(SMALL, epochs=20, min_epochs=0)))
    config = json.loads((partial.run_dir / "config.json").read_text())
    config["options"]["epochs"] = 30
    (partial.run_dir / "config.json").write_text(json.dumps(config))
    resumed = resume(work, partial.run_dir)
    assert resumed.epochs_run == 30
    a = load_file(str(full.run_dir / "embeddings.safetensors"))
    b = load_file(str(resumed.run_dir / "embeddings.safetensors"))
    assert all(np.allclose(a[k].numpy(), b[k].numpy(), atol=1e-5) for k in ("kg1", "kg2"))


def test_members_are_whole_runs_whose_embeddings_are_concatenated(workspace) -> None:
    work, pair = workspace
    options = dict(SMALL, epochs=20, min_epochs=0, members=2)
    result = train(work, pair.seeds, TrainOptions(**options), test=pair.test)
    run = result.run_dir
    members = [load_file(str(run / "members" / str(k) / "embeddings.safetensors")) for k in (0, 1)]
    whole = load_file(str(run / "embeddings.safetensors"))
    for key in ("kg1", "kg2"):
        expected = torch.nn.functional.normalize(torch.cat([m[key] for m in members], dim=1), dim=1)
        assert torch.allclose(whole[key], expected)
    assert not torch.equal(members[0]["kg1"], members[1]["kg1"])  # seeds 2023 and 2024
    summary = json.loads((run / "summary.json").read_text())
    assert [m["seed"] for m in summary["members"]] == [2023, 2024]
    assert summary["test"] == result.test and result.selected_epoch is None
    assert [m.epochs_run for m in result.members] == [20, 20] and result.epochs_run == 40
    # Member 0 is the single run with the same seed: members share the splits.
    single = train(work, pair.seeds, TrainOptions(**dict(options, members=1)), test=pair.test)
    assert torch.equal(load_file(str(single.run_dir / "embeddings.safetensors"))["kg1"], members[0]["kg1"])


def test_an_interrupted_ensemble_resumes_its_unfinished_member(workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    work, pair = workspace
    options = TrainOptions(**dict(SMALL, epochs=20, min_epochs=0, members=2))
    full = train(work, pair.seeds, options)
    step = Trainer.step

    def interrupted(self: Trainer) -> float:
        if self.options.seed == 2024 and self.epoch == 15:  # member 1, past its epoch-10 checkpoint
            raise KeyboardInterrupt
        return step(self)

    monkeypatch.setattr(Trainer, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(work, pair.seeds, options)
    monkeypatch.setattr(Trainer, "step", step)
    run = (work / "runs" / "latest").resolve()
    assert (run / "members" / "0" / "summary.json").is_file() and not (run / "members" / "1" / "summary.json").is_file()
    reporter = RecordingReporter()
    resumed = resume(work, run, reporter=reporter)
    assert "resuming members/1 at epoch 10" in reporter.infos
    assert not any(line.startswith("members/0") for line in reporter.infos)  # finished: not trained again
    a = load_file(str(full.run_dir / "embeddings.safetensors"))
    b = load_file(str(resumed.run_dir / "embeddings.safetensors"))
    assert all(np.allclose(a[k].numpy(), b[k].numpy(), atol=1e-5) for k in ("kg1", "kg2"))


def test_runs_saved_before_an_option_existed_resume_as_they_trained() -> None:
    """Older config.json files lack pseudo_refresh, direct_dim, relation_direction and members; they
    accumulated pairs, tied the width to dim, counted a relation's heads and tails in one column and
    trained one model."""
    from mmalign.train import saved_options

    old = saved_options({"dim": 300, "loss": "infonce", "not_an_option_any_more": 1})
    assert (old.pseudo_refresh, old.direct_dim, old.dim, old.loss) == (False, 300, 300, "infonce")
    assert old.relation_direction == "merged" and old.members == 1
    new = saved_options(asdict(TrainOptions()))
    assert new == TrainOptions()


def test_seed_and_test_overlap_is_an_error(workspace, tmp_path: Path) -> None:
    work, pair = workspace
    overlap = tmp_path / "overlap.tsv"
    overlap.write_text(pair.seeds.read_text().splitlines()[0] + "\n")
    with pytest.raises(MMAlignError, match="in both the seeds and the test pairs"):
        train(work, pair.seeds, TrainOptions(**SMALL), test=overlap)


@pytest.mark.parametrize(
    "content, message",
    [
        ("e1\tE1x\ne1\tE1x\n", "2: pair listed twice"),
        ("e1\tnope\n", "1: unknown KG2 entity 'nope'"),
        ("e1 E1x\n", "1: expected 2 tab-separated columns"),
        ("", "no pairs in file"),
    ],
)
def test_bad_seed_files_exit_2_with_one_line(workspace, tmp_path: Path, content: str, message: str) -> None:
    work, _ = workspace
    seeds = tmp_path / "bad.tsv"
    seeds.write_text(content)
    result = CliRunner().invoke(app, ["train", "--seeds", str(seeds), "-w", str(work)])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    "flag, value, message",
    [("--loss", "hinge", "unknown loss 'hinge'"), ("--pseudo-pool", "dev", "unknown pseudo-pair pool 'dev'"),
     ("--pseudo-score", "l2", "unknown pseudo-pair score 'l2'"), ("--attention", "gat", "unknown RREA attention 'gat'"), ("--names", "all", "unknown names mode 'all'"),
     ("--name-encoder", "char+foo", "unknown name encoder 'char+foo'"),
     ("--batch-size", "0", "--batch-size must be at least 1"), ("--members", "0", "--members must be at least 1"), ("--pseudo-per-seed", "-1", "--pseudo-per-seed must be at least 0"),
     ("--precision", "fp23", "unknown precision 'fp23'")],
)
def test_bad_options_exit_2_before_a_run_folder_exists(workspace, flag: str, value: str, message: str) -> None:
    work, pair = workspace
    result = CliRunner().invoke(app, ["train", "--seeds", str(pair.seeds), "-w", str(work), flag, value])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not (work / "runs").exists()


def test_skip_unknown_counts_and_continues(workspace, tmp_path: Path) -> None:
    work, pair = workspace
    seeds = tmp_path / "seeds.tsv"
    seeds.write_text(pair.seeds.read_text() + "ghost\tE1x\n")
    result = CliRunner().invoke(app, ["train", "--seeds", str(seeds), "-w", str(work), "--skip-unknown", "--epochs", "2",
                                      "--dim", "16", "--rank", "2", "-q"])
    assert result.exit_code == 0, result.output
    assert "skipped 1 pair naming unknown entities" in " ".join(result.output.split())


def test_gpu_without_cuda_is_a_clear_error(workspace) -> None:
    work, pair = workspace
    result = CliRunner().invoke(app, ["train", "--seeds", str(pair.seeds), "-w", str(work), "--gpu", "0"])
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert result.exit_code == 2 and "--gpu 0: " in result.output and "leave out --gpu" in result.output


def test_dropout_is_seeded_and_changes_training(workspace) -> None:
    work, pair = workspace
    options = dict(SMALL, epochs=5, min_epochs=0, eval_every=5, iterative=False)
    runs = [train(work, pair.seeds, TrainOptions(**options, dropout=p)) for p in (0.3, 0.3, 0.0)]
    a, b, c = (load_file(str(r.run_dir / "embeddings.safetensors"))["kg1"].numpy() for r in runs)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_pair_caps_keep_every_seed_and_sample_pseudo_pairs(workspace) -> None:
    trainer, splits = _trainer(workspace, max_pairs=0, pseudo_per_seed=0)
    n1 = trainer.n1
    used = set(splits.train[:, 0]) | set(splits.valid[:, 0])
    free = [i for i in range(n1) if i not in used]
    trainer.pseudo = np.array([(i, i + n1) for i in free], dtype=np.int64)
    seen: list[int] = []
    plain = trainer.loss_fn
    trainer.loss_fn = lambda left, right, tau: (seen.append(len(left)), plain(left, right, tau))[1]
    trainer.step()
    assert sum(seen) == len(splits.train) + len(trainer.pseudo)
    seen.clear()
    seeds = len(splits.train)
    assert len(trainer.pseudo) > seeds + 3  # so each cap below is what binds, not the supply
    trainer.options.max_pairs = 2 * seeds + 3
    trainer.step()
    assert sum(seen) == 2 * seeds + 3
    seen.clear()
    trainer.options.max_pairs = seeds + 3  # below twice the seeds: as many pseudo pairs as seeds
    trainer.step()
    assert sum(seen) == 2 * seeds
    seen.clear()
    trainer.options.max_pairs, trainer.options.pseudo_per_seed = 0, 0.5
    trainer.step()  # the ratio caps, not the supply
    assert sum(seen) == seeds + seeds // 2
    seen.clear()
    assert int(1.5 * seeds) > seeds + 3
    trainer.options.max_pairs, trainer.options.pseudo_per_seed = 2 * seeds + 3, 1.5  # the tighter cap wins
    trainer.step()
    assert sum(seen) == 2 * seeds + 3


def test_chunked_step_gradient_equals_one_backward_of_the_summed_loss(workspace) -> None:
    """The step differentiates each chunk on its own rows; the model must get the plain gradient."""
    trainer, splits = _trainer(workspace, batch_size=7)
    options = trainer.options
    assert len(splits.train) > 2 * options.batch_size and len(splits.train) % options.batch_size  # several chunks, uneven
    generator = copy.deepcopy(trainer.generator)
    trainer.optimizer.step = lambda: None  # keep the parameters, read the gradients
    trainer.step()
    got = [p.grad.clone() for p in trainer.model.parameters()]

    trainer.model.zero_grad(set_to_none=True)
    pairs = splits.train[generator.permutation(len(splits.train))]
    table = torch.cat(trainer.model.forward_blocks(trainer.inputs, trainer.graph), dim=1)
    chunks = np.array_split(pairs, -(-len(pairs) // options.batch_size))  # as even as they come, none over the batch size
    loss = sum(trainer.loss_fn(table[chunk[:, 0]], table[chunk[:, 1]], options.tau) for chunk in map(torch.from_numpy, chunks))
    loss.backward()
    for a, p in zip(got, trainer.model.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("refresh", [True, False])
def test_pseudo_pairs_refresh_replaces_and_accumulate_keeps(workspace, refresh: bool) -> None:
    """Refresh: a window's mutual pairs replace the last window's, so a stale wrong pair leaves."""
    trainer, splits = _trainer(workspace, pseudo_refresh=refresh)
    n1, n2 = trainer.n1, trainer.n_entities - trainer.n1
    free = sorted(set(range(min(n1, n2))) - set(splits.train[:, 0]) - set(splits.train[:, 1] - n1))
    stale = (free[0], free[1] + n1)  # a wrong pair kept from an earlier window
    trainer.pseudo = np.array([stale], dtype=np.int64)
    embeddings = torch.nn.functional.normalize(torch.randn(trainer.n_entities, 16, generator=torch.Generator().manual_seed(0)), dim=1)
    embeddings[n1 : n1 + min(n1, n2)] = embeddings[: min(n1, n2)]  # KG1 entity i matches KG2 entity i
    for trainer.epoch in (24, 29):  # the two checks of the window that ends at epoch 30
        trainer.update_pseudo_pairs(embeddings)
    pairs = {tuple(p) for p in trainer.pseudo.tolist()}
    assert (stale in pairs) is not refresh
    assert ((free[0], free[0] + n1) in pairs) is refresh  # the stale pair's KG1 entity is searched again
    assert {(i, i + n1) for i in free[2:]} <= pairs


def test_pseudo_pool_test_searches_only_test_entities(workspace) -> None:
    work, pair = workspace
    with pytest.raises(MMAlignError, match="needs --test"):
        train(work, pair.seeds, TrainOptions(**SMALL, pseudo_pool="test"))
    # Half the non-seed pairs as the test file: the other half are non-seed entities outside it.
    lines = [line for line in pair.test.read_text().splitlines() if line]
    half = work.parent / "half_test.tsv"
    half.write_text("".join(line + "\n" for line in lines[: len(lines) // 2]))
    result = train(work, pair.seeds, TrainOptions(**SMALL, pseudo_pool="test"), test=half)
    pseudo = load_file(str(result.run_dir / "checkpoint.safetensors"))["pseudo"].numpy().reshape(-1, 2)
    test_keys = [line.split("\t") for line in lines[: len(lines) // 2]]
    ws = Workspace.open(work)
    left, right = ws.kg1.entity_index(), ws.kg2.entity_index()
    n1 = len(ws.kg1.entities)
    assert len(pseudo)
    assert set(pseudo[:, 0]) <= {left[a] for a, _ in test_keys}
    assert set(pseudo[:, 1]) <= {right[b] + n1 for _, b in test_keys}
