"""Training end to end on generated KGs: alignment, determinism, resume, errors."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from mmalign.cli import app
from mmalign.errors import MMAlignError
from mmalign.hardware import choose_precision
from mmalign.ingest import ingest
from mmalign.model.loginmea import LoginMEA
from mmalign.pairs import read_pairs
from mmalign.report import SILENT, RecordingReporter
from mmalign.training import TrainConfig, resume, train
from mmalign.training.inputs import build_inputs
from mmalign.training.loop import Trainer
from mmalign.training.splits import Splits, make_splits, read_split_files, validation_metrics
from mmalign.workspace import Workspace
from synthetic import make_pair

SMALL = dict(dim=32, modal_dim=32, rank=4, epochs=60, eval_every=10, start=20, check_every=5, window=10,
             min_epochs=60, lr=0.01, valid_fraction=0.2, precision="fp32", members=1)


def config(**settings: object) -> TrainConfig:
    """The SMALL settings with ``settings`` on top."""
    return TrainConfig.build({**SMALL, **settings})


@pytest.fixture()
def workspace(tmp_path: Path):
    pair = make_pair(tmp_path / "data")
    work = tmp_path / "work"
    ingest([pair.kg1, pair.kg2], work)
    return work, pair


def _trainer(workspace, **overrides) -> tuple[Trainer, Splits]:
    """A Trainer on the generated pair with the SMALL settings (plus ``overrides``), not yet trained."""
    work, pair = workspace
    ws = Workspace.open(work)
    settings = config(**overrides).resolved()
    splits = make_splits(ws, pair.seeds, valid=None, valid_fraction=0.2, valid_max=5000, test=None, seed=1, skip_unknown=False, reporter=SILENT)
    cpu = torch.device("cpu")
    inputs = build_inputs(ws, settings.features, settings.seed, cpu, SILENT)
    model = LoginMEA(settings.model, [f.dim for f in inputs.features], inputs.n_entities, inputs.n_relations, inputs.direct)
    (work / "scratch").mkdir(exist_ok=True)
    return Trainer(model, inputs, splits, settings, work / "scratch", choose_precision("fp32", cpu), cpu), splits


def test_the_drawn_validation_split_is_capped_and_the_rest_trains(workspace) -> None:
    work, pair = workspace
    ws = Workspace.open(work)
    whole = make_splits(ws, pair.seeds, valid=None, valid_fraction=0.2, valid_max=5000, test=None, seed=1, skip_unknown=False, reporter=SILENT)
    capped = make_splits(ws, pair.seeds, valid=None, valid_fraction=0.2, valid_max=3, test=None, seed=1, skip_unknown=False, reporter=SILENT)
    assert len(whole.valid) > 3 and len(capped.valid) == 3
    assert len(capped.train) + 3 == len(whole.train) + len(whole.valid)
    assert {tuple(p) for p in capped.valid} <= {tuple(p) for p in whole.valid}  # the same draw, cut short


def test_seed_pairs_that_share_an_entity_fall_on_one_side_of_the_drawn_validation_split(workspace, tmp_path: Path) -> None:
    """A KG1 entity linked to two KG2 entities (DB15K's seed50 has one), and a chain of four
    pairs: every draw keeps each group on one side; without links the draw is as before."""
    work, pair = workspace
    ws = Workspace.open(work)
    rows = [line.split("\t") for line in pair.seeds.read_text(encoding="utf-8").splitlines()]
    test_keys = {line.split("\t")[1] for line in pair.test.read_text(encoding="utf-8").splitlines()}
    spare = sorted(test_keys)[:2]  # KG2 entities no seed names
    linked = pair.seeds.parent / "linked_seeds.tsv"
    extra = [[rows[0][0], spare[0]], [rows[1][0], spare[1]], [rows[2][0], rows[1][1]]]  # groups: rows 0 + extra 0; rows 1, 2 + extras 1, 2
    linked.write_text("".join(f"{a}\t{b}\n" for a, b in rows + extra), encoding="utf-8")
    for seed in range(12):
        reporter = RecordingReporter()
        splits = make_splits(ws, linked, valid=None, valid_fraction=0.2, valid_max=5000, test=None, seed=seed, skip_unknown=False, reporter=reporter)
        for side in (0, 1):
            assert not set(splits.valid[:, side]) & set(splits.train[:, side]), seed
        assert len(splits.valid) + len(splits.train) == len(rows) + len(extra)
        assert len(splits.valid) >= round(0.2 * (len(rows) + len(extra)))
        assert any(line.startswith("6 seed pairs share an entity") for line in reporter.infos), reporter.infos
    local = read_pairs(pair.seeds, ws, skip_unknown=False, reporter=SILENT)
    plain = make_splits(ws, pair.seeds, valid=None, valid_fraction=0.2, valid_max=5000, test=None, seed=1, skip_unknown=False, reporter=SILENT)
    n_valid = round(0.2 * len(local))
    before = local[np.random.default_rng(1).permutation(len(local))[:n_valid]] + np.array([0, len(ws.kg1.entities)])
    assert np.array_equal(plain.valid, before)  # the draw of the runs made before this rule


def test_isomorphic_graphs_align_perfectly(workspace) -> None:
    work, pair = workspace
    result = train(work, pair.seeds, config(), test=pair.test)
    assert result.test["hits@1"] == 1.0, result.test
    run = result.run_dir
    for name in ("config.json", "pairs/train.tsv", "embeddings.safetensors", "summary.json"):
        assert (run / name).is_file(), name
    for name in ("checkpoint.safetensors", "best.safetensors", "metrics.jsonl", "embeddings.safetensors", "summary.json"):
        assert (run / "members" / "0" / name).is_file(), name
    assert (work / "runs" / "latest").resolve() == run.resolve()
    embeddings = load_file(str(run / "embeddings.safetensors"))
    assert embeddings["kg1"].shape[0] == 80 or embeddings["kg1"].shape[0] > 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["hits@1"] == 1.0 and "relation" in summary["modalities"]
    assert {"attribute", "image", "name"} <= set(summary["skipped_modalities"])  # none in these KGs
    assert summary["members"][0]["test"] == summary["test"] and summary["format"] == 2  # one model: an ensemble of one
    evaluations = [json.loads(line) for line in (run / "members" / "0" / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in evaluations if e["split"] == "valid"] == [10, 20, 30, 40, 50, 60]


def test_config_records_the_precision_chosen_and_why(workspace) -> None:
    work, pair = workspace
    reporter = RecordingReporter()
    result = train(work, pair.seeds, config(epochs=2, min_epochs=0, precision="auto"), reporter=reporter)
    saved = json.loads((result.run_dir / "config.json").read_text())
    chosen = saved["precision"]["chosen"]
    assert saved["precision"]["requested"] == "auto" and chosen in ("bf16", "fp32") and saved["precision"]["why"]
    assert saved["config"]["compute"]["precision"] == chosen  # what the run computed with, so a resume repeats it
    assert any(line.startswith(f"precision: {chosen} (") for line in reporter.infos)


def test_same_seed_gives_identical_embeddings(workspace) -> None:
    work, pair = workspace
    first = train(work, pair.seeds, config(epochs=12, min_epochs=0))
    second = train(work, pair.seeds, config(epochs=12, min_epochs=0))
    a = load_file(str(first.run_dir / "embeddings.safetensors"))
    b = load_file(str(second.run_dir / "embeddings.safetensors"))
    assert first.run_dir != second.run_dir
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in ("kg1", "kg2"))


@pytest.mark.parametrize("partitions", [1, pytest.param(2, id="partitioned")])
def test_resume_continues_to_the_same_result(workspace, partitions: int) -> None:
    if partitions > 1:
        pytest.importorskip("pymetis")
    work, pair = workspace
    full = train(work, pair.seeds, config(epochs=30, min_epochs=0, partitions=partitions))
    # Stop a run at epoch 20 (its last checkpoint), then resume it with a budget of 30.
    partial = train(work, pair.seeds, config(epochs=20, min_epochs=0, partitions=partitions))
    saved = json.loads((partial.run_dir / "config.json").read_text())
    saved["config"]["schedule"]["epochs"] = 30
    (partial.run_dir / "config.json").write_text(json.dumps(saved))
    (partial.run_dir / "members" / "0" / "summary.json").unlink()  # as if it had stopped at epoch 20
    resumed = resume(work, partial.run_dir)
    assert resumed.epochs_run == 30
    a = load_file(str(full.run_dir / "embeddings.safetensors"))
    b = load_file(str(resumed.run_dir / "embeddings.safetensors"))
    assert all(np.allclose(a[k].numpy(), b[k].numpy(), atol=1e-5) for k in ("kg1", "kg2"))


def test_a_one_model_run_saved_before_the_package_layout_resumes(workspace) -> None:
    """Older one-model runs trained in the run folder itself, with flat options of older names."""
    from mmalign.training.config import LEGACY_NAMES

    work, pair = workspace
    full = train(work, pair.seeds, config(epochs=30, min_epochs=0))
    partial = train(work, pair.seeds, config(epochs=20, min_epochs=0))
    run = partial.run_dir
    for path in (run / "members" / "0").iterdir():
        if path.name not in ("summary.json", "embeddings.safetensors"):  # as if it had stopped at epoch 20
            path.rename(run / path.name)
    for name in ("summary.json", "embeddings.safetensors"):
        (run / name).unlink()
    shutil.rmtree(run / "members")
    saved = json.loads((run / "config.json").read_text())
    old_names = {new: old for old, new in LEGACY_NAMES.items()}
    flat = {old_names.get(name, name): value for section in saved.pop("config").values() if isinstance(section, dict)
            for name, value in section.items()}
    saved["options"] = {**flat, "seed": 2023, "members": 1, "variant": "code", "epochs": 30}
    saved.pop("format")
    (run / "config.json").write_text(json.dumps(saved))
    reporter = RecordingReporter()
    resumed = resume(work, run, reporter=reporter)
    assert f"resuming {run.name} at epoch 20" in reporter.infos
    assert resumed.epochs_run == 30 and json.loads((run / "summary.json").read_text())["format"] == 2
    a = load_file(str(full.run_dir / "embeddings.safetensors"))
    b = load_file(str(run / "embeddings.safetensors"))
    assert all(np.allclose(a[k].numpy(), b[k].numpy(), atol=1e-5) for k in ("kg1", "kg2"))


@pytest.mark.parametrize("warm", [True, False])
def test_members_are_whole_runs_whose_concatenation_or_last_ranks_validation_best(workspace, warm: bool) -> None:
    work, pair = workspace
    result = train(work, pair.seeds, config(epochs=20, min_epochs=0, members=2, warm_start=warm), test=pair.test)
    run = result.run_dir
    members = [load_file(str(run / "members" / str(k) / "embeddings.safetensors")) for k in (0, 1)]
    whole = load_file(str(run / "embeddings.safetensors"))
    ws = Workspace.open(work)
    n1 = len(ws.kg1.entities)
    concatenated = torch.nn.functional.normalize(torch.cat([torch.cat([m["kg1"], m["kg2"]]) for m in members], dim=1), dim=1)
    both = validation_metrics(concatenated, read_split_files(run, ws), n1, 3)
    last = result.members[-1].valid
    summary = json.loads((run / "summary.json").read_text())
    if summary["output"] == "concatenation":
        assert [both["hits@1"], both["mrr"]] >= [last["hits@1"], last["mrr"]]
        assert torch.allclose(torch.cat([whole["kg1"], whole["kg2"]]), concatenated) and summary["valid"] == both
    else:
        assert summary["output"] == "members/1" and [last["hits@1"], last["mrr"]] > [both["hits@1"], both["mrr"]]
        assert torch.equal(whole["kg1"], members[1]["kg1"]) and summary["valid"] == last
    assert not torch.equal(members[0]["kg1"], members[1]["kg1"])  # seeds 2023 and 2024
    assert [m["seed"] for m in summary["members"]] == [2023, 2024]
    assert summary["test"] == result.test
    assert [m.epochs_run for m in result.members] == [20, 20] and result.epochs_run == 40
    # Member 0 is the single run with the same seed: members share the splits.
    single = train(work, pair.seeds, config(epochs=20, min_epochs=0, members=1), test=pair.test)
    assert torch.equal(load_file(str(single.run_dir / "embeddings.safetensors"))["kg1"], members[0]["kg1"])


@pytest.mark.parametrize("warm", [True, False])
def test_a_later_member_starts_with_the_pseudo_pairs_the_last_one_ended_with(workspace, monkeypatch: pytest.MonkeyPatch, warm: bool) -> None:
    """Member 0 stops by the rule at epoch 40, a window's end: it skips that search unless it hands its pairs over."""
    work, pair = workspace
    started: dict[int, int] = {}
    searched: dict[int, list[int]] = {}
    fit = Trainer.fit

    def recording(self: Trainer) -> tuple[int, float]:
        started[self.config.seed] = len(self.pseudo.pairs)
        searched[self.config.seed] = []
        update_of_this = self.pseudo.update

        def counted(embeddings, epoch, *args, **kwargs):
            searched[self.config.seed].append(epoch)
            return update_of_this(embeddings, epoch, *args, **kwargs)

        self.pseudo.update = counted  # type: ignore[method-assign]
        return fit(self)

    monkeypatch.setattr(Trainer, "fit", recording)
    # The first validation gains, none after can gain 1.0: patience 1 ends both members at epoch 40.
    result = train(work, pair.seeds, config(epochs=60, min_epochs=40, patience=1, min_delta=1.0, members=2, warm_start=warm))
    assert [m.epochs_run for m in result.members] == [40, 40]
    assert searched[2023] == ([25, 30, 35, 40] if warm else [25, 30, 35])
    assert searched[2024] == [25, 30, 35]  # the last member hands nothing over
    ended = load_file(str(result.run_dir / "members" / "0" / "checkpoint.safetensors"))["pseudo"].reshape(-1, 2)
    assert len(ended) > 0 and started[2023] == 0
    assert started[2024] == (len(ended) if warm else 0)


def test_a_member_resumed_at_the_epoch_it_stopped_at_trains_no_further(workspace) -> None:
    work, pair = workspace
    options = config(epochs=60, min_epochs=40, patience=1, min_delta=1.0)
    full = train(work, pair.seeds, options)
    (full.run_dir / "members" / "0" / "summary.json").unlink()  # as if interrupted before its summary
    reporter = RecordingReporter()
    resumed = resume(work, full.run_dir, reporter=reporter)
    assert resumed.members[0].epochs_run == 40
    assert any(line.startswith("it had stopped at epoch 40: validation H@1 gained less than 1.0") for line in reporter.infos), reporter.infos
    lines = (full.run_dir / "members" / "0" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines if json.loads(line)["split"] == "valid"] == [10, 20, 30, 40]


def test_an_interrupted_ensemble_resumes_its_unfinished_member(workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    work, pair = workspace
    options = config(epochs=20, min_epochs=0, members=2)
    full = train(work, pair.seeds, options)
    step = Trainer.step

    def interrupted(self: Trainer) -> float:
        if self.config.seed == 2024 and self.epoch == 15:  # member 1, past its epoch-10 checkpoint
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


def test_runs_saved_before_a_setting_existed_resume_as_they_trained() -> None:
    """Older config.json files hold flat options with older names and lack pseudo_refresh, direct_dim,
    relation_direction and members; they accumulated pairs, tied the width to dim, counted a
    relation's heads and tails in one column and trained one model."""
    old = TrainConfig.load({"options": {"dim": 300, "loss": "infonce", "il_start": 30, "pseudo_pool": "all"}})
    assert (old.pseudo.refresh, old.model.direct_dim, old.model.dim, old.schedule.loss) == (False, 300, 300, "infonce")
    assert old.features.relation_direction == "merged" and old.members == 1 and old.pseudo.start == 30
    with pytest.raises(MMAlignError, match="unknown setting 'not_an_option'"):
        TrainConfig.load({"options": {"not_an_option": 1}})
    assert TrainConfig.load({"config": TrainConfig().to_dict()}) == TrainConfig()
    assert (old.bootstrap.cross_fit, old.compute.pseudo_ann_from) == (False, old.compute.ann_from)
    assert old.pseudo.slide is False
    assert old.ranking.method == "csls"
    assert old.selection.reading == "csls" and old.selection.select_from_min_epochs is False


def test_nested_configs_saved_before_cross_fit_and_pseudo_ann_from_resume_without_them() -> None:
    """A run saved before these settings trained every member on every bootstrapped pair,
    searched pseudo pairs approximately from ``ann_from``, renewed them at each window's end
    only, ranked test pairs by CSLS and validated by CSLS, selecting among all epochs;
    resumed (or evaluated), it goes on doing so."""
    saved = TrainConfig().to_dict()
    del saved["bootstrap"]["cross_fit"], saved["compute"]["pseudo_ann_from"], saved["ranking"], saved["pseudo"]["slide"]
    del saved["selection"]["reading"], saved["selection"]["select_from_min_epochs"]
    saved["compute"]["ann_from"] = 1234
    old = TrainConfig.load({"config": saved})
    assert old.bootstrap.cross_fit is False and old.compute.pseudo_ann_from == 1234 and old.pseudo.slide is False
    assert old.ranking.method == "csls" and TrainConfig().ranking.method == "sinkhorn"
    assert (old.selection.reading, old.selection.select_from_min_epochs) == ("csls", False)
    assert (TrainConfig().selection.reading, TrainConfig().selection.select_from_min_epochs) == ("auto", True)
    assert "cross_fit" not in saved["bootstrap"]  # the saved data is not changed


def test_a_seed_pair_in_the_test_file_is_an_error_and_a_shared_entity_is_said(workspace, tmp_path: Path) -> None:
    work, pair = workspace
    seeds, tests = (p.read_text().splitlines() for p in (pair.seeds, pair.test))
    overlap = tmp_path / "overlap.tsv"
    overlap.write_text(seeds[0] + "\n")
    with pytest.raises(MMAlignError, match="1 pair is both seed and test pairs"):
        train(work, pair.seeds, config(), test=overlap)
    # The first seed's KG1 entity linked a second time, to a KG2 entity no seed names.
    second = tmp_path / "second_link.tsv"
    second.write_text("".join(f"{line}\n" for line in tests[1:]) + seeds[0].split("\t")[0] + "\t" + tests[0].split("\t")[1] + "\n")
    reporter = RecordingReporter()
    splits = make_splits(Workspace.open(work), pair.seeds, valid=None, valid_fraction=0.2, valid_max=5000, test=second, seed=1,
                         skip_unknown=False, reporter=reporter)
    assert len(splits.test) == len(tests)
    assert "1 test pair shares an entity with a seed pair (an entity linked twice); tested as given" in reporter.infos


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
    "args, message",
    [(["--loss", "hinge"], "Invalid value for '--loss': 'hinge' is not one of 'nhs', 'infonce', 'infonce_sym', 'icl'"),
     (["--pseudo-pool", "dev"], "'dev' is not one of 'all', 'test'"), (["--attention", "gat"], "'gat' is not one of 'relation', 'full'"),
     (["--names", "all"], "'all' is not one of 'none', 'recorded', 'recorded+iri', 'iri'"), (["--precision", "fp23"], "'fp23' is not one of 'auto', 'bf16', 'fp32'"),
     (["--set", "loss=hinge"], "unknown loss 'hinge' (choose nhs, infonce, infonce_sym, icl)"),
     (["--set", "pseudo.pool=dev"], "unknown pseudo-pair pool 'dev'"), (["--set", "score=l2"], "unknown pseudo-pair score 'l2'"),
     (["--set", "model.fusion=sum"], "unknown fusion 'sum' (choose lmf, weighted_sum, concat)"),
     (["--set", "graph_layer=rrae"], "unknown graph layer 'rrae' (choose rrea, gat)"), (["--set", "paradigm=logn"], "unknown paradigm 'logn'"),
     (["--set", "dimm=64"], "unknown setting 'dimm' in --set (did you mean 'dim'?)"), (["--set", "dim"], "--set expects NAME=VALUE"),
     (["--set", "dim=wide"], "dim must be a whole number, got 'wide'"),
     (["--name-encoder", "char+foo"], "unknown name encoder 'char+foo'"),
     (["--batch-size", "0"], "--batch-size must be at least 1"), (["--members", "0"], "--members must be at least 1"),
     (["--pseudo-per-seed", "-1"], "--pseudo-per-seed must be at least 0"), (["--valid-fraction", "1.5"], "--valid-fraction must be between 0 and 1")],
)
def test_bad_options_exit_2_before_a_run_folder_exists(workspace, args: list[str], message: str) -> None:
    work, pair = workspace
    result = CliRunner().invoke(app, ["train", "--seeds", str(pair.seeds), "-w", str(work), *args])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output  # one line
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
    runs = [train(work, pair.seeds, config(epochs=5, min_epochs=0, eval_every=5, iterative=False, dropout=p)) for p in (0.3, 0.3, 0.0)]
    a, b, c = (load_file(str(r.run_dir / "embeddings.safetensors"))["kg1"].numpy() for r in runs)
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_pair_caps_sample_pseudo_pairs_and_seeds_past_the_cap(workspace) -> None:
    trainer, splits = _trainer(workspace, max_pairs=0, pseudo_per_seed=0)
    n1 = trainer.inputs.n1
    used = set(splits.train[:, 0]) | set(splits.valid[:, 0])
    free = [i for i in range(n1) if i not in used]
    trainer.pseudo.pairs = np.array([(i, i + n1) for i in free], dtype=np.int64)
    seen: list[int] = []
    plain = trainer.loss_fn
    trainer.loss_fn = lambda left, right, tau: (seen.append(len(left)), plain(left, right, tau))[1]
    trainer.step()
    assert sum(seen) == len(splits.train) + len(trainer.pseudo.pairs)
    seen.clear()
    seeds = len(splits.train)
    assert len(trainer.pseudo.pairs) > seeds + 3  # so each cap below is what binds, not the supply
    trainer.config = trainer.config.override({"max_pairs": 2 * seeds + 3})
    trainer.step()
    assert sum(seen) == 2 * seeds + 3
    seen.clear()
    trainer.config = trainer.config.override({"max_pairs": seeds + 3})  # below twice the seeds: as many pseudo pairs as seeds
    trainer.step()
    assert sum(seen) == 2 * seeds
    seen.clear()
    trainer.config = trainer.config.override({"max_pairs": 0, "pseudo_per_seed": 0.5})
    trainer.step()  # the ratio caps, not the supply
    assert sum(seen) == seeds + seeds // 2
    seen.clear()
    assert int(1.5 * seeds) > seeds + 3
    trainer.config = trainer.config.override({"max_pairs": 2 * seeds + 3, "pseudo_per_seed": 1.5})  # the tighter cap wins
    trainer.step()
    assert sum(seen) == 2 * seeds + 3
    seen.clear()
    trainer.config = trainer.config.override({"max_pairs": seeds - 5, "pseudo_per_seed": 0})  # fewer than the seeds: both sampled
    trainer.step()
    assert sum(seen) == 2 * (seeds - 5)


def test_chunked_step_gradient_equals_one_backward_of_the_summed_loss(workspace) -> None:
    """The step differentiates each chunk on its own rows; the model must get the plain gradient."""
    trainer, splits = _trainer(workspace, batch_size=7)
    options = trainer.config.schedule
    assert len(splits.train) > 2 * options.batch_size and len(splits.train) % options.batch_size  # several chunks, uneven
    generator = copy.deepcopy(trainer.generator)
    got: list[torch.Tensor] = []
    # Keep the parameters and read the gradients the optimiser is given (the step drops them after).
    trainer.optimizer.step = lambda: got.extend(p.grad.clone() for p in trainer.model.parameters())
    trainer.step()
    assert all(p.grad is None for p in trainer.model.parameters())

    pairs = splits.train[generator.permutation(len(splits.train))]
    table = torch.cat(trainer.model.forward_blocks(trainer.inputs.matrices, trainer.inputs.graph), dim=1)
    chunks = np.array_split(pairs, -(-len(pairs) // options.batch_size))  # as even as they come, none over the batch size
    loss = sum(trainer.loss_fn(table[chunk[:, 0]], table[chunk[:, 1]], options.tau) for chunk in map(torch.from_numpy, chunks))
    loss.backward()
    for a, p in zip(got, trainer.model.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("refresh", [True, False])
def test_pseudo_pairs_refresh_replaces_and_accumulate_keeps(workspace, refresh: bool) -> None:
    """Refresh: a window's mutual pairs replace the last window's, so a stale wrong pair leaves."""
    trainer, splits = _trainer(workspace, refresh=refresh)
    n1, n_entities = trainer.inputs.n1, trainer.inputs.n_entities
    n2 = n_entities - n1
    free = sorted(set(range(min(n1, n2))) - set(splits.train[:, 0]) - set(splits.train[:, 1] - n1))
    stale = (free[0], free[1] + n1)  # a wrong pair kept from an earlier window
    trainer.pseudo.pairs = np.array([stale], dtype=np.int64)
    embeddings = torch.nn.functional.normalize(torch.randn(n_entities, 16, generator=torch.Generator().manual_seed(0)), dim=1)
    embeddings[n1 : n1 + min(n1, n2)] = embeddings[: min(n1, n2)]  # KG1 entity i matches KG2 entity i
    for epoch in (25, 30):  # the two checks of the window that ends at epoch 30
        assert trainer.pseudo.due(epoch)
        trainer.pseudo.update(embeddings, epoch, splits.train, n1, n_entities, None)
    pairs = {tuple(p) for p in trainer.pseudo.pairs.tolist()}
    assert (stale in pairs) is not refresh
    assert ((free[0], free[0] + n1) in pairs) is refresh  # the stale pair's KG1 entity is searched again
    assert {(i, i + n1) for i in free[2:]} <= pairs


@pytest.mark.parametrize("slide", [True, False])
def test_a_sliding_window_renews_the_pairs_at_every_check_and_survives_a_checkpoint(workspace, slide: bool) -> None:
    """Checks at 25, 30, 35 (window 10, every 5): at 30 both kinds keep the pairs mutual at 25 and
    30; at 35 a sliding window renews them from 30 and 35 (a swap first seen at 30 joins),
    while windows that follow each other wait for epoch 40. A labeller restored from the
    state saved after 30 goes on as the one that ran."""
    trainer, splits = _trainer(workspace, slide=slide)
    n1, n_entities = trainer.inputs.n1, trainer.inputs.n_entities
    n2 = n_entities - n1
    free = sorted(set(range(min(n1, n2))) - set(splits.train[:, 0]) - set(splits.train[:, 1] - n1))
    same = torch.nn.functional.normalize(torch.randn(n_entities, 16, generator=torch.Generator().manual_seed(0)), dim=1)
    same[n1 : n1 + min(n1, n2)] = same[: min(n1, n2)]  # KG1 entity i matches KG2 entity i
    swapped = same.clone()
    a, b = free[0], free[1]
    swapped[[n1 + a, n1 + b]] = same[[n1 + b, n1 + a]]  # now a matches KG2's b and b matches a
    labeller = trainer.pseudo
    labeller.update(same, 25, splits.train, n1, n_entities, None)
    assert len(labeller.pairs) == 0  # one check is not yet a window
    labeller.update(swapped, 30, splits.train, n1, n_entities, None)
    at_30 = {tuple(p) for p in labeller.pairs.tolist()}
    assert {(i, i + n1) for i in free[2:]} <= at_30 and not {(a, a + n1), (a, b + n1), (b, a + n1)} & at_30
    restored = copy.copy(labeller)
    restored.pairs, restored.recent = np.zeros((0, 2), dtype=np.int64), []
    restored.load_state(labeller.state())
    for each in (labeller, restored):
        each.update(swapped, 35, splits.train, n1, n_entities, None)
    at_35 = {tuple(p) for p in labeller.pairs.tolist()}
    assert at_35 == {tuple(p) for p in restored.pairs.tolist()}
    assert ((a, b + n1) in at_35 and (b, a + n1) in at_35) is slide
    assert at_35 == at_30 if not slide else {(i, i + n1) for i in free[2:]} <= at_35


def test_the_search_reading_validations_lists_finds_the_pairs_of_its_own_pass(workspace) -> None:
    """With CSLS and with cosine, mutual pairs from the unpaired entities' lists of 50 (the
    Sinkhorn validation's) are the pairs the search's own pass of 8 finds."""
    from mmalign.training.unpaired import unpaired_lists

    for score in ("csls", "cosine"):
        trainer, splits = _trainer(workspace, slide=False, score=score)
        n1, n_entities = trainer.inputs.n1, trainer.inputs.n_entities
        n2 = n_entities - n1
        embeddings = torch.randn(n_entities, 16, generator=torch.Generator().manual_seed(0))
        embeddings[n1 : n1 + min(n1, n2)] = embeddings[: min(n1, n2)] + 0.8 * torch.randn(min(n1, n2), 16)
        embeddings = torch.nn.functional.normalize(embeddings, dim=1)
        lists = unpaired_lists(embeddings, splits.train, n1, 50, torch.float32)
        found = []
        for given in (None, lists):
            labeller = copy.deepcopy(trainer.pseudo)
            assert labeller.reads(given, None) is (given is not None)
            for epoch in (25, 30):
                labeller.update(embeddings, epoch, splits.train, n1, n_entities, None, lists=given)
            found.append(labeller.pairs.tolist())
        assert found[0] == found[1] and len(found[0]) > 10, score
        assert not trainer.pseudo.reads(lists, np.zeros(n_entities, dtype=np.int64))  # partitioned: its own search


def test_validation_reads_sinkhorn_where_one_pass_serves_the_search_too(workspace) -> None:
    from mmalign.training.selection import Reading

    assert _trainer(workspace)[0].reading is Reading.SINKHORN
    assert _trainer(workspace, reading="csls")[0].reading is Reading.CSLS
    assert _trainer(workspace, pseudo_ann_from=1)[0].reading is Reading.CSLS  # approximate searches
    trainer = _trainer(workspace)[0]
    trainer.model.direct_width = 8  # a names block: each trial output weight would need its own pass
    assert trainer._reading() is Reading.CSLS
    with pytest.raises(MMAlignError, match="unknown validation reading 'cosine'"):
        config(reading="cosine")
    work, pair = workspace
    for partitions, reading in ((1, "sinkhorn"), (2, "csls")):  # parts: the search runs part by part
        result = train(work, pair.seeds, config(epochs=20, min_epochs=20, partitions=partitions))
        rows = [json.loads(line) for line in (result.run_dir / "members" / "0" / "metrics.jsonl").read_text().splitlines()]
        valid = [row for row in rows if row["split"] == "valid"]
        assert [row["reading"] for row in valid] == [reading, reading]
        member = json.loads((result.run_dir / "members" / "0" / "summary.json").read_text())
        assert member["reading"] == reading
        # The member's validation metrics are its selected evaluation's, ranked as selection ranked.
        assert member["valid"]["hits@1"] == next(r for r in valid if r["epoch"] == member["selected_epoch"])["hits@1"]


def test_a_checkpoint_saved_before_sliding_windows_restores_its_window() -> None:
    """Checkpoints of windows that follow each other held one ``candidates`` set."""
    from mmalign.training.pseudo import PseudoConfig, PseudoLabeller

    labeller = PseudoLabeller(PseudoConfig(slide=False), 3, "fp32", 0)
    labeller.load_state({"pseudo": torch.tensor([[0, 5]]), "candidates": torch.tensor([[1, 6], [2, 7]])})
    assert labeller.pairs.tolist() == [[0, 5]] and labeller.recent == [{(1, 6), (2, 7)}]


def test_pseudo_pool_test_searches_only_test_entities(workspace) -> None:
    work, pair = workspace
    with pytest.raises(MMAlignError, match="needs --test"):
        train(work, pair.seeds, config(pool="test"))
    # Half the non-seed pairs as the test file: the other half are non-seed entities outside it.
    lines = [line for line in pair.test.read_text().splitlines() if line]
    half = work.parent / "half_test.tsv"
    half.write_text("".join(line + "\n" for line in lines[: len(lines) // 2]))
    result = train(work, pair.seeds, config(pool="test"), test=half)
    pseudo = load_file(str(result.run_dir / "members" / "0" / "checkpoint.safetensors"))["pseudo"].numpy().reshape(-1, 2)
    test_keys = [line.split("\t") for line in lines[: len(lines) // 2]]
    ws = Workspace.open(work)
    left, right = ws.kg1.entity_index(), ws.kg2.entity_index()
    n1 = len(ws.kg1.entities)
    assert len(pseudo)
    assert set(pseudo[:, 0]) <= {left[a] for a, _ in test_keys}
    assert set(pseudo[:, 1]) <= {right[b] + n1 for _, b in test_keys}


def test_the_pseudo_pair_search_has_its_own_ann_threshold(workspace) -> None:
    """``pseudo_ann_from``, not ``ann_from``, decides whether the pseudo-pair search goes approximate."""
    trainer, _ = _trainer(workspace, ann_from=1, pseudo_ann_from=0)
    assert trainer.pseudo.ann_from == 0
    trainer, _ = _trainer(workspace, ann_from=0, pseudo_ann_from=7)
    assert trainer.pseudo.ann_from == 7
    with pytest.raises(MMAlignError, match="pseudo-ann-from must be at least 0, got -1"):
        TrainConfig.build({"pseudo_ann_from": -1})
