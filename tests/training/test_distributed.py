"""Training under torchrun: 2 ranks (gloo over loopback) against 1 process, one run folder, resume.

Agreement with one process, on the tiny generated pair: a 2-rank run sums the same loss chunks
in another order, so every epoch's loss agrees to RELATIVE_LOSS (measured: about 1e-6; the
first epoch, before any parameter differs, to the last printed digit), the embeddings to
EMBEDDING_ATOL (measured: 1e-5) and validation and test H@1 exactly (tolerance 0 here; on real
data a 2-rank run can differ from one process in the last bits as runs at two thread counts
do, docs/guide.md). Summing a chunk twice or forgetting a rank's chunks would double or halve
the first epoch's loss.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from mmalign.cli import app
from mmalign.errors import MMAlignError
from mmalign.ingest import ingest
from mmalign.training import distributed
from synthetic import make_pair

ROOT = Path(__file__).resolve().parents[2]
RELATIVE_LOSS = 1e-4
FIRST_EPOCH_RELATIVE_LOSS = 1e-6
EMBEDDING_ATOL = 1e-4
# Batches of 5 pairs: 4 loss chunks an epoch on the seeds, more once pseudo pairs join at epoch 6
# (searches at 4 and 6); validation at every epoch, so metrics.jsonl holds every epoch's loss, and
# no early stop, so the resumed run has epochs left to train.
OPTIONS = ["--batch-size", "5", "--dim", "32", "--modal-dim", "32", "--rank", "4", "--eval-every", "1", "--precision", "fp32",
           "--members", "2", "--set", "pseudo.start=2", "--set", "check_every=2", "--set", "window=4", "--set", "min_epochs=0",
           "--set", "patience=8", "--set", "valid_fraction=0.2", "--set", "lr=0.01", "-q"]
EPOCHS, PARTIAL = 8, 4


@pytest.mark.parametrize("n_chunks, world", [(0, 2), (1, 2), (4, 2), (7, 3), (16, 2), (2, 5), (9, 1)])
def test_every_chunk_goes_to_exactly_one_rank(n_chunks: int, world: int) -> None:
    shares = [distributed.my_chunks(n_chunks, r, world) for r in range(world)]
    assert sorted(i for share in shares for i in share) == list(range(n_chunks))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1  # balanced to one chunk


def test_one_process_has_no_process_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("RANK", "3")  # ignored without WORLD_SIZE > 1
    assert (distributed.world_size(), distributed.rank(), distributed.is_main()) == (1, 0, True)
    assert distributed.my_chunks(3) == [0, 1, 2]
    assert distributed.broadcast_object({"x": 1}) == {"x": 1} and distributed.record() == {"world_size": 1, "backend": None}


def test_world_size_without_a_launcher_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(MMAlignError, match="MASTER_ADDR, MASTER_PORT unset: start several processes with torchrun"):
        with distributed.session(torch.device("cpu")):
            pass


def test_gpu_under_torchrun_takes_one_gpu_per_local_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert distributed.gpu_for_rank(0) == 1
    with pytest.raises(MMAlignError, match=r"--gpu 1 under torchrun: local rank 1 needs cuda:2, but only 2 CUDA device\(s\) are visible; "
                                           r"start at most 1 processes per node"):
        distributed.gpu_for_rank(1)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.gpu_for_rank(1) == 1  # one process: --gpu N as always


def _one_process(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``mmalign ARGS`` in this process at one thread, as each torchrun rank runs (thread counts change last bits)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(app, args)
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output


def _torchrun(args: list[str], cwd: Path, ranks: int = 2) -> None:
    """``mmalign ARGS`` under torchrun with ``ranks`` processes on this machine."""
    env = {**os.environ, "PYTHONFAULTHANDLER": "1", "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1",  # what torchrun sets for several ranks on one machine
           "TMPDIR": str(cwd)}  # torchrun's log folder (torchelastic_*) goes with the test's files
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    # --standalone: a local rendezvous on a free port of localhost, gloo over loopback.
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks)]
    done = subprocess.run([sys.executable, *launcher, "-m", "mmalign", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _losses(run: Path, member: int) -> dict[int, float]:
    lines = [json.loads(line) for line in (run / "members" / str(member) / "metrics.jsonl").read_text().splitlines()]
    valid = [line for line in lines if line["split"] == "valid"]
    assert len({line["epoch"] for line in valid}) == len(valid)  # each epoch once: one writer
    return {line["epoch"]: line["loss"] for line in valid}


def _files(run: Path) -> set[str]:
    return {str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()}


@pytest.mark.slow  # about 20 s: two torchrun launches of 3 processes each
def test_two_ranks_train_and_resume_like_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pair = make_pair(tmp_path / "data")
    one, two = tmp_path / "one", tmp_path / "two"
    for work in (one, two):
        ingest([pair.kg1, pair.kg2], work)
    common = ["--seeds", str(pair.seeds), "--test", str(pair.test), *OPTIONS]
    _one_process(["train", "-w", str(one), "--epochs", str(EPOCHS), *common], monkeypatch)
    # Two ranks with half the budget, then resumed with the whole budget, as an interrupted run.
    _torchrun(["train", "-w", str(two), "--epochs", str(PARTIAL), *common], tmp_path)

    runs = sorted(p.name for p in (two / "runs").iterdir())
    assert len(runs) == 2 and "latest" in runs  # one run folder (and the link to it)
    run, single = (two / "runs" / "latest").resolve(), (one / "runs" / "latest").resolve()
    assert _files(run) == _files(single)  # the same files, none duplicated, no temporaries left
    config, summary = (json.loads((run / name).read_text()) for name in ("config.json", "summary.json"))
    assert config["distributed"] == summary["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert json.loads((single / "config.json").read_text())["distributed"] == {"world_size": 1, "backend": None}
    first_one, first_two = _losses(single, 0)[1], _losses(run, 0)[1]
    assert abs(first_two - first_one) <= FIRST_EPOCH_RELATIVE_LOSS * abs(first_one)

    config["config"]["schedule"]["epochs"] = EPOCHS
    (run / "config.json").write_text(json.dumps(config))
    for member in (0, 1):
        (run / "members" / str(member) / "summary.json").unlink()  # as if it had stopped at epoch PARTIAL
    _torchrun(["train", "--resume", "-w", str(two), "-q"], tmp_path)

    assert sorted(p.name for p in (two / "runs").iterdir()) == runs
    a, b = (json.loads((r / "summary.json").read_text()) for r in (single, run))
    assert b["distributed"]["world_size"] == 2
    assert [(m["selected_epoch"], m["epochs_run"]) for m in a["members"]] == [(m["selected_epoch"], m["epochs_run"]) for m in b["members"]]
    assert b["members"][0]["epochs_run"] > PARTIAL  # it did continue
    for split in ("valid", "test"):
        assert b[split]["hits@1"] == a[split]["hits@1"], split
    for member in (0, 1):
        losses_one, losses_two = _losses(single, member), _losses(run, member)
        assert losses_one.keys() == losses_two.keys()
        assert all(abs(losses_two[e] - loss) <= RELATIVE_LOSS * abs(loss) for e, loss in losses_one.items()), (losses_one, losses_two)
    x, y = (load_file(str(r / "embeddings.safetensors")) for r in (single, run))
    assert all(np.allclose(x[k].numpy(), y[k].numpy(), atol=EMBEDDING_ATOL) for k in ("kg1", "kg2"))
