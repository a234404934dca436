"""Seed pairs bootstrapped from names: what is found, how sure, and training without a seed file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mmalign.cli import app
from mmalign.errors import MMAlignError
from mmalign.features.config import FeatureConfig
from mmalign.ingest import ingest
from mmalign.links import LinkConfig, link
from mmalign.predict import predict
from mmalign.report import RecordingReporter
from mmalign.training import TrainConfig, train
from mmalign.training.bootstrap import BootstrapConfig, bootstrap_seeds, choose_margin
from mmalign.training.splits import given_seeds
from mmalign.workspace import Workspace
from synthetic import SyntheticPair, make_pair

LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyz"))


def named_pair(root: Path, n: int = 80, renamed: float = 0.25, seed: int = 0) -> tuple[SyntheticPair, Path, set[tuple[str, str]]]:
    """The synthetic pair with names: KG2 keeps KG1's name with one typo, except ``renamed`` of them.

    A renamed KG2 entity takes another entity's name with two typos (names that nearly agree
    by accident, as in real KGs), and its KG1 counterpart then has no name match. Returns the
    pair, its ingested workspace, and the pairs whose names still agree.
    """
    pair = make_pair(root / "data", n=n, seed=seed)
    rng = np.random.default_rng(seed)

    def typo(name: str) -> str:
        at = int(rng.integers(0, len(name)))
        return name[:at] + str(rng.choice(LETTERS)) + name[at + 1 :]

    names = [" ".join("".join(rng.choice(LETTERS, rng.integers(5, 9))) for _ in range(2)) for _ in pair.pairs]
    agree = set()
    lines1, lines2 = [], []
    for k, (left, right) in enumerate(pair.pairs):
        if rng.random() < renamed:
            other = typo(typo(names[(k + 1 + int(rng.integers(0, len(names) - 1))) % len(names)]))
        else:
            other = typo(names[k])
            agree.add((left, right))
        lines1.append(f"{left}\t{names[k]}\n")
        lines2.append(f"{right}\t{other}\n")
    (pair.kg1 / "names.tsv").write_text("".join(lines1), encoding="utf-8")
    (pair.kg2 / "names.tsv").write_text("".join(lines2), encoding="utf-8")
    work = root / "work"
    ingest([pair.kg1, pair.kg2], work)
    return pair, work, agree


def keys(workspace: Workspace, pairs: np.ndarray) -> set[tuple[str, str]]:
    return {(workspace.kg1.entities[a], workspace.kg2.entities[b]) for a, b in pairs.tolist()}


def test_bootstrap_finds_the_name_matches_and_estimates_their_precision(tmp_path: Path) -> None:
    pair, work, agree = named_pair(tmp_path, n=300)
    workspace = Workspace.open(work)
    found = bootstrap_seeds(workspace, FeatureConfig(), BootstrapConfig(seed_precision=0.9), csls_k=3)
    pairs = keys(workspace, found.pairs)
    truth = set(pair.pairs)
    precision = len(pairs & truth) / len(pairs)
    assert precision >= 0.95
    assert len(pairs & agree) >= 0.7 * len(agree)  # most entities whose names agree are found
    assert found.info["pairs"] == len(pairs) and found.info["encoders"] == ["char"]
    assert abs(found.info["estimated_precision"] - precision) <= 0.1
    assert len({a for a, _ in pairs}) == len(pairs) == len({b for _, b in pairs})  # mutual: one-to-one


def test_choose_margin_takes_the_smallest_margin_whose_estimate_holds() -> None:
    margins = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    # Decoys reach 0.25 at most: below it, wrong passes are expected among the 6 - P(t) ... left.
    decoys = np.array([0.25, 0.15, 0.05])
    margin, precision = choose_margin(margins, decoys, n_queries=10, target=0.9)
    assert margin == 0.3 and precision == 1.0
    margin, precision = choose_margin(margins, decoys, n_queries=10, target=0.3)
    assert margin < 0.3 and precision >= 0.3
    with pytest.raises(MMAlignError, match="clear nearest"):
        choose_margin(np.zeros(3), decoys, n_queries=10, target=0.9)


def test_bootstrap_refuses_without_names(tmp_path: Path) -> None:
    pair = make_pair(tmp_path / "data")
    ingest([pair.kg1, pair.kg2], tmp_path / "work")
    with pytest.raises(MMAlignError, match="names are off"):
        bootstrap_seeds(Workspace.open(tmp_path / "work"), FeatureConfig(names="none"), BootstrapConfig(), csls_k=3)
    with pytest.raises(MMAlignError, match="too few named entities"):  # keys like e12 are no IRIs: no names at all
        bootstrap_seeds(Workspace.open(tmp_path / "work"), FeatureConfig(), BootstrapConfig(), csls_k=3)


def test_bootstrap_settings_are_checked() -> None:
    with pytest.raises(MMAlignError, match="seed_precision"):
        TrainConfig.build({"seed_precision": 1.5})


SHORT = ["--epochs", "2", "--eval-every", "2", "--set", "min_epochs=0", "--members", "1", "--dim", "16",
         "--modal-dim", "16", "--rank", "2", "--precision", "fp32", "-q"]


def test_train_without_seeds_bootstraps_them_and_records_it(tmp_path: Path) -> None:
    pair, work, _ = named_pair(tmp_path)
    result = CliRunner().invoke(app, ["train", "-w", str(work), "--test", str(pair.test), *SHORT])
    assert result.exit_code == 0, result.output
    run = work / "runs" / "latest"
    summary = json.loads((run / "summary.json").read_text())
    config = json.loads((run / "config.json").read_text())
    assert config["seeds"] == "auto" and summary["seeds"]["source"] == "names"
    assert summary["seeds"]["pairs"] > 20
    # The run's pair files hold the bootstrapped pairs (train + valid), found without the links.
    written = [line.split("\t") for name in ("train", "valid") for line in (run / "pairs" / f"{name}.tsv").read_text().splitlines()[1:]]
    assert len(written) == summary["seeds"]["pairs"]
    # Test pairs may share entities with bootstrapped seeds: counted, not refused.
    assert summary["seeds"]["test_entities_bootstrapped"] > 0
    # Bootstrapped pairs are evidence, not given truth: predict still ranks for every KG1 entity.
    assert len((run / "pairs" / "bootstrapped.tsv").read_text().splitlines()) == 1 + summary["seeds"]["pairs"]
    assert len(predict(work, top_k=1).query_ids) == len(Workspace.open(work).kg1.entities)


def test_seeds_auto_with_names_off_is_a_clear_error(tmp_path: Path) -> None:
    pair, work, _ = named_pair(tmp_path)
    result = CliRunner().invoke(app, ["train", "--seeds", "auto", "-w", str(work), "--names", "none", *SHORT])
    assert result.exit_code == 2
    assert "names are off" in result.output and "Traceback" not in result.output


def test_seeds_extend_adds_pairs_that_touch_no_seed(tmp_path: Path) -> None:
    pair, work, _ = named_pair(tmp_path)
    settings = TrainConfig.build(dict(dim=16, modal_dim=16, rank=2, epochs=2, eval_every=2, min_epochs=0, iterative=False,
                                      precision="fp32", members=1, seeds_extend=True))
    result = train(work, pair.seeds, settings, test=pair.test)
    origin = json.loads((result.run_dir / "summary.json").read_text())["seeds"]
    assert origin["source"] == "file+names" and origin["added"] > 0
    train_lines = (result.run_dir / "pairs" / "train.tsv").read_text().splitlines()[1:]
    seed_count = len(pair.seeds.read_text().splitlines())
    assert len(train_lines) + len((result.run_dir / "pairs" / "valid.tsv").read_text().splitlines()[1:]) == seed_count + origin["added"]
    firsts = [line.split("\t")[0] for line in train_lines]
    assert len(firsts) == len(set(firsts))  # no KG1 entity twice
    # The seed file's pairs stay settled; the added ones are decided again by predict and link.
    assert len(given_seeds(result.run_dir, Workspace.open(work))) == seed_count
    reporter = RecordingReporter()
    links = link(work, None, LinkConfig(), reporter)
    assert any("bootstrapped from names are linked too" in message for message in reporter.infos)
    assert len(links.kg1) == len(Workspace.open(work).kg1.entities) - seed_count


def test_selection_on_bootstrapped_validation_keeps_the_trained_weight_and_the_latest() -> None:
    from mmalign.training.selection import SelectionConfig, Selector

    def metrics(h1: float, mrr: float) -> dict:
        return {"hits@1": h1, "mrr": mrr}

    plain, names = Selector(SelectionConfig()), Selector(SelectionConfig(), names_validation=True)
    for epoch, h1 in ((10, 0.990), (20, 0.997), (30, 0.997), (40, 0.994), (50, 0.980)):
        plain.observe(epoch, metrics(h1, h1), None)
        assert names.observe(epoch, metrics(h1, h1), None)  # every evaluation is the selected one
    assert plain.best_epoch == 20  # the earliest best
    assert names.best_epoch == 50  # the latest, however far validation drifted from its peak
    reweighted = []
    names.validate(torch.zeros(2, 2), lambda e: metrics(0.5, 0.5), lambda e, w: reweighted.append(w) or e)
    assert reweighted == []  # the trained direct weight: no weight is tried on name-picked pairs


def test_stop_rules_patience_after_min_epochs_and_a_fixed_length_for_bootstrapped_validation() -> None:
    from mmalign.training.selection import SelectionConfig, Selector

    config = SelectionConfig(patience=2, min_delta=0.01, min_epochs=40, bootstrapped_epochs=60)
    plain, names = Selector(config), Selector(config, names_validation=True)
    stops: dict[str, tuple[int, str]] = {}
    for epoch, h1 in ((10, 0.50), (20, 0.70), (30, 0.705), (40, 0.709), (50, 0.72), (60, 0.71)):
        for key, selector in (("plain", plain), ("names", names)):
            selector.observe(epoch, {"hits@1": h1, "mrr": h1}, None)
            reason = selector.stop_reason(epoch)
            if reason and key not in stops:
                stops[key] = (epoch, reason)
    # Gains under min_delta at 30 and 40 exhaust patience 2, and 40 is min_epochs.
    assert stops["plain"][0] == 40 and "less than 0.01 for 2 evaluations" in stops["plain"][1]
    # Bootstrapped validation never stops a run early, however flat: it trains its fixed length.
    assert stops["names"][0] == 60 and "bootstrapped" in stops["names"][1]
    with pytest.raises(MMAlignError, match="bootstrapped-epochs"):
        SelectionConfig(bootstrapped_epochs=0).check()


def test_cross_fit_gives_each_member_its_own_share_of_bootstrapped_seeds() -> None:
    from mmalign.training.ensemble import member_splits
    from mmalign.training.splits import Splits

    train_pairs = np.stack([np.arange(101), np.arange(101) + 200], axis=1)
    bootstrapped = Splits(train_pairs, train_pairs[:0], None, {"source": "names"})
    config = TrainConfig.build({"members": 3})
    shares = [member_splits(bootstrapped, config, k).train for k in range(3)]
    together = np.concatenate(shares)
    assert sorted(map(len, shares)) == [33, 34, 34]
    assert len(np.unique(together[:, 0])) == 101 and np.array_equal(np.unique(together, axis=0), train_pairs)
    # Drawn from the run's seed: a resumed run trains each member on the same share.
    assert np.array_equal(member_splits(bootstrapped, config, 1).train, shares[1])
    assert not np.array_equal(member_splits(bootstrapped, config.override({"seed": 7}), 1).train, shares[1])
    # A seed file's pairs are given truth, one member has nothing to share, and the setting turns it off.
    given = Splits(train_pairs, train_pairs[:0], None, {"source": "file"})
    assert len(member_splits(given, config, 0).train) == 101
    assert len(member_splits(bootstrapped, config.override({"members": 1}), 0).train) == 101
    assert len(member_splits(bootstrapped, config.override({"cross_fit": False}), 0).train) == 101


def test_members_cross_fit_bootstrapped_seeds_in_a_run(tmp_path: Path) -> None:
    pair, work, _ = named_pair(tmp_path)
    short = [a for a in SHORT if a not in ("--members", "1", "-q")]
    result = CliRunner().invoke(app, ["train", "-w", str(work), "--members", "2", *short])
    assert result.exit_code == 0, result.output
    assert result.output.count("share of the bootstrapped seed pairs") == 2
    config = json.loads((work / "runs" / "latest" / "config.json").read_text())
    assert config["config"]["bootstrap"]["cross_fit"] is True
