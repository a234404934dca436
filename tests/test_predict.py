"""predict/evaluate on a tiny ingested workspace with a fabricated run folder (the run contract)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mmalign.cli import app
from mmalign.errors import MMAlignError
from mmalign.evaluation import RankMethod
from mmalign.ingest import ingest
from mmalign.predict import Direction, evaluate, predict
from mmalign.search import ListSides
from mmalign.atomic import atomic_write_json
from mmalign.pairs import write_pairs
from mmalign.run import atomic_save_tensors, new_run, pairs_file
from mmalign.training import TrainConfig, train
from synthetic import make_pair

N = 30
SEEDS = [(f"a{i}", f"b{i}") for i in range(8)]
VALID = [(f"a{i}", f"b{i}") for i in (8, 9)]
TEST_METRICS = {"hits@1": 0.5, "hits@5": 0.75, "hits@10": 1.0, "mrr": 0.6, "mr": 2.5, "count": 4}


def kg_folder(folder: Path, prefix: str, n: int) -> Path:
    folder.mkdir()
    lines = [f"{prefix}{i}\tnext\t{prefix}{i + 1}" for i in range(n - 1)]
    (folder / "triples.tsv").write_text("\n".join(lines) + "\n")
    return folder


def make_workdir(root: Path, n: int) -> Path:
    """A workspace of two chains a0..a{n-1}, b0..b{n-1} and a run whose a_i embeds next to b_i."""
    work = root / "work"
    ws = ingest([kg_folder(root / "kg1", "a", n), kg_folder(root / "kg2", "b", n)], work).workspace
    assert ws.kg1.entities == [f"a{i}" for i in range(n)]
    g = torch.Generator().manual_seed(0)
    base = torch.randn(n, 16, generator=g)
    kg1 = torch.nn.functional.normalize(base + 0.05 * torch.randn(n, 16, generator=g), dim=1)
    kg2 = torch.nn.functional.normalize(base + 0.05 * torch.randn(n, 16, generator=g), dim=1)
    run = new_run(work)
    atomic_write_json(run / "config.json", {"config": TrainConfig.build({"csls": 3}).to_dict(), "data": ws.manifest["sources"]})
    atomic_save_tensors(run / "embeddings.safetensors", {"kg1": kg1, "kg2": kg2})
    left, right = ws.kg1.entity_index(), ws.kg2.entity_index()
    for split, keys in (("train", SEEDS), ("valid", VALID)):
        write_pairs(pairs_file(run, split), np.array([(left[a], right[b]) for a, b in keys]), ws)
    atomic_write_json(run / "summary.json", {"format": 2, "members": [], "test": TEST_METRICS})
    return work


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_workdir(tmp_path_factory.mktemp("ws"), N)


def rows(text: str) -> list[list[str]]:
    lines = text.splitlines()
    assert lines[0] == "kg1_entity\tkg2_entity\tscore\trank"
    return [line.split("\t") for line in lines[1:]]


def test_predict_ranks_non_seeds_against_non_seeds(workdir: Path) -> None:
    result = predict(workdir, top_k=3, csls_k=3)
    table = rows("".join(result.lines()))
    seeds1 = {a for a, _ in SEEDS + VALID}
    seeds2 = {b for _, b in SEEDS + VALID}
    assert len(table) == 3 * (N - len(seeds1))
    assert {r[0] for r in table} == {f"a{i}" for i in range(N)} - seeds1
    assert not {r[1] for r in table} & seeds2
    assert [r[3] for r in table[:3]] == ["1", "2", "3"]
    assert all(len(r[2].split(".")[1]) == 6 for r in table)
    top1 = {r[0]: r[1] for r in table if r[3] == "1"}
    assert all(b == "b" + a[1:] for a, b in top1.items())
    assert result.test_metrics == TEST_METRICS


def test_predict_ranks_as_the_run_or_as_asked(workdir: Path) -> None:
    """The run's ranking (Sinkhorn: weights in [0, 1]) unless ``ranking`` says otherwise;
    both find every partner here."""
    sinkhorn, cosine = (rows("".join(predict(workdir, top_k=2, ranking=method).lines()))
                        for method in (None, RankMethod.CSLS))
    assert all(0 <= float(r[2]) <= 1 for r in sinkhorn)
    assert [(r[0], r[1]) for r in sinkhorn if r[3] == "1"] == [(r[0], r[1]) for r in cosine if r[3] == "1"]
    assert [r[2] for r in sinkhorn] != [r[2] for r in cosine]


def test_predict_takes_the_sinkhorn_lists_asked_for(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's Sinkhorn lists unless asked for others (the same partners first here); a bad
    choice is one line and exit 2."""
    from mmalign import search

    asked: list[tuple[ListSides, int]] = []
    original = search.sinkhorn_topk

    def recording(*args, **kwargs):
        asked.append((kwargs["sides"], kwargs["lists"]))
        return original(*args, **kwargs)

    monkeypatch.setattr(search, "sinkhorn_topk", recording)
    both = predict(workdir, top_k=2)
    mine = predict(workdir, top_k=2, sinkhorn_sides=ListSides.QUERIES, sinkhorn_lists=4)
    assert asked == [(ListSides.BOTH, 50), (ListSides.QUERIES, 4)]
    assert torch.equal(mine.indices[:, 0], both.indices[:, 0])
    for args, said in ((["--sinkhorn-sides", "columns"], "columns"), (["--sinkhorn-lists", "0"], "sinkhorn-lists")):
        result = CliRunner().invoke(app, ["predict", "-w", str(workdir), *args])
        assert result.exit_code == 2 and said in result.stderr and "Traceback" not in result.stderr


def test_predict_reverse_direction_keeps_kg1_column_first(workdir: Path) -> None:
    table = rows("".join(predict(workdir, top_k=2, csls_k=0, direction=Direction.KG2_TO_KG1).lines()))
    assert len(table) == 2 * (N - 10)
    assert all(r[0].startswith("a") and r[1].startswith("b") for r in table)
    assert all(r[0] == "a" + r[1][1:] for r in table if r[3] == "1")


def test_include_seeds_ranks_everything(workdir: Path) -> None:
    table = rows("".join(predict(workdir, top_k=1, include_seeds=True).lines()))
    assert [(r[0], r[1]) for r in table] == [(f"a{i}", f"b{i}") for i in range(N)]


def test_one_to_one_prints_a_matching(workdir: Path) -> None:
    table = rows("".join(predict(workdir, top_k=5, one_to_one=True, include_seeds=True).lines()))
    assert len({r[0] for r in table}) == len({r[1] for r in table}) == len(table) == N


def run_with(workdir: Path, folder: Path, kg1: torch.Tensor, kg2: torch.Tensor) -> Path:
    """A copy of the workspace's run with other embeddings."""
    folder.mkdir()
    (folder / "config.json").write_text((workdir / "runs" / "latest" / "config.json").read_text())
    atomic_save_tensors(folder / "embeddings.safetensors", {"kg1": kg1, "kg2": kg2})
    return folder


def test_mismatched_embeddings_are_a_clear_error(workdir: Path, tmp_path: Path) -> None:
    with pytest.raises(MMAlignError, match="re-ingested"):
        predict(workdir, run_with(workdir, tmp_path / "run", torch.zeros(3, 4), torch.zeros(3, 4)))


def test_nan_embeddings_are_a_clear_error(workdir: Path, tmp_path: Path) -> None:
    broken = torch.zeros(N, 4)
    broken[3, 1] = float("nan")
    with pytest.raises(MMAlignError, match="NaN"):
        predict(workdir, run_with(workdir, tmp_path / "run", broken, torch.zeros(N, 4)))


def test_cli_predict_tsv_on_stdout_summary_on_stderr(workdir: Path) -> None:
    result = CliRunner().invoke(app, ["predict", "-w", str(workdir), "--top-k", "2", "--csls", "0"])
    assert result.exit_code == 0, result.output
    assert len(rows(result.stdout)) == 2 * (N - 10)
    assert "test metrics" in result.stderr and "0.7500" in result.stderr


def test_cli_predict_into_closed_pipe_is_quiet(tmp_path: Path) -> None:
    # 400 × 400 rows, about 8 MB: far more than a pipe buffers, so the writer meets EPIPE.
    workdir = make_workdir(tmp_path, 400)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.run(
        f"set -o pipefail; {sys.executable} -m mmalign predict -q -w {workdir} --top-k 400 --include-seeds | head -n 1",
        shell=True, executable="/bin/bash", capture_output=True, text=True, env=env, check=True,
    )
    assert proc.stdout == "kg1_entity\tkg2_entity\tscore\trank\n"
    assert "Traceback" not in proc.stderr and "Error" not in proc.stderr


def test_cli_no_run_is_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["predict", "-w", str(tmp_path)])
    assert result.exit_code == 2 and "no training run yet" in result.stderr


def test_run_is_found_by_path_inside_the_workspace_or_by_name(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mmalign.run import resolve_run

    latest = resolve_run(workdir)
    monkeypatch.chdir(workdir.parent)  # ``runs/<id>`` as the guide writes it, from elsewhere
    for given in (latest, Path("runs") / latest.name, Path(latest.name)):
        assert resolve_run(workdir, given) == latest
    with pytest.raises(MMAlignError, match="not a run folder"):
        resolve_run(workdir, Path("runs") / "nope")


def gold_file(path: Path, pairs: list[tuple[str, str]]) -> Path:
    path.write_text("".join(f"{a}\t{b}\n" for a, b in pairs))
    return path


TEST_PAIRS = [(f"a{i}", f"b{i}") for i in range(10, N)]


def test_evaluate_matches_search_and_protocols(workdir: Path, tmp_path: Path) -> None:
    gold = gold_file(tmp_path / "gold.tsv", TEST_PAIRS)
    metrics = evaluate(workdir, None, gold)
    assert metrics["count"] == 20 and metrics["hits@1"] == 1.0
    wide = evaluate(workdir, None, gold, all_candidates=True, csls_k=0)
    assert wide["count"] == 20 and wide["mr"] >= metrics["mr"]


def test_cli_evaluate_json_and_unknown_entities(workdir: Path, tmp_path: Path) -> None:
    gold = gold_file(tmp_path / "gold.tsv", TEST_PAIRS + [("a10", "nobody")])
    result = CliRunner().invoke(app, ["evaluate", "-w", str(workdir), "--gold", str(gold), "--json"])
    assert result.exit_code == 2 and "nobody" in result.stderr and result.stdout == ""
    result = CliRunner().invoke(app, ["evaluate", "-w", str(workdir), "--gold", str(gold), "--json", "--skip-unknown"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert list(metrics) == ["hits@1", "hits@5", "hits@10", "mrr", "mr", "count"]
    assert metrics["count"] == 20
    log = " ".join(result.stderr.split())  # rich wraps the warning where the tmp path is long
    assert "H@10" in log and "skipped 1 pair" in log
    assert np.isclose(metrics["mrr"], 1.0)


def tiny_trained_run(tmp_path: Path, valid_fraction: float):
    """A synthetic pair ingested into ``tmp_path/work`` and a 2-epoch run on it: (pair, work, result)."""
    pair = make_pair(tmp_path / "data")
    work = tmp_path / "work"
    ingest([pair.kg1, pair.kg2], work)
    options = TrainConfig.build(dict(dim=16, modal_dim=16, rank=2, epochs=2, eval_every=2, min_epochs=0, iterative=False,
                                     lr=0.01, valid_fraction=valid_fraction, precision="fp32", members=1))
    return pair, work, train(work, pair.seeds, options, test=pair.test)


def test_predict_on_a_trained_run_leaves_out_its_seeds(tmp_path: Path) -> None:
    """A real (short) run: predict reads the pair files training wrote and its test metrics."""
    pair, work, result = tiny_trained_run(tmp_path, valid_fraction=0.2)
    assert evaluate(work, None, pair.test) == result.test  # the run's own test protocol and CSLS
    predicted = predict(work, top_k=1)
    assert predicted.test_metrics == result.test
    assert len(predicted.query_ids) == 80 - len(pair.seeds.read_text().splitlines())
