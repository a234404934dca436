"""The run folder: one folder per training run holding its config, checkpoints, trace and output.

Layout (see docs/design.md): ``config.json``, ``pairs/{train,valid,test}.tsv``,
``checkpoint.safetensors`` + ``checkpoint.json``, ``best.safetensors``, ``metrics.jsonl``,
``embeddings.safetensors``, ``summary.json``; an ensemble's members are run folders of their own
in ``members/<k>/``. ``runs/latest`` is a symlink to the newest run.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from mmalign.atomic import temp_beside
from mmalign.errors import MMAlignError

RUNS = "runs"
LATEST = "latest"


def atomic_save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """safetensors save through a temp file and rename (checkpoints survive interruptions)."""
    tmp = temp_beside(path)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def new_run(workdir: Path) -> Path:
    """Create ``runs/<timestamp>`` (suffix -2, -3 ... if taken) and point ``runs/latest`` at it."""
    runs = workdir / RUNS
    runs.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder, n = runs / stamp, 1
    while True:
        try:
            folder.mkdir()
            break
        except FileExistsError:
            n += 1
            folder = runs / f"{stamp}-{n}"
    set_latest(workdir, folder)
    return folder


def set_latest(workdir: Path, folder: Path) -> None:
    """Point ``runs/latest`` at ``folder`` atomically (relative symlink)."""
    runs = workdir / RUNS
    tmp = runs / f".latest.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(folder.name)
    os.replace(tmp, runs / LATEST)


def resolve_run(workdir: Path, run: Path | None = None) -> Path:
    """The run folder named by ``--run`` (a path; or one inside the workspace, such as
    ``runs/<id>``; or a name under runs/), else ``runs/latest``."""
    if run is not None:
        for candidate in (Path(run), workdir / run, workdir / RUNS / str(run)):
            if (candidate / "config.json").is_file():
                return candidate.resolve()
        raise MMAlignError("not a run folder (no config.json); give a folder under runs/", path=run)
    latest = workdir / RUNS / LATEST
    if not (latest / "config.json").is_file():
        raise MMAlignError("no training run yet; run `mmalign train --seeds FILE` first", path=workdir)
    return latest.resolve()


def pairs_file(folder: Path, split: str) -> Path:
    """Where a run keeps the entity-key pairs of a split (train, valid or test); see :mod:`mmalign.pairs`."""
    return folder / "pairs" / f"{split}.tsv"


def load_embeddings(folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The final entity embeddings (KG1, KG2) of a run, L2-normalised float32."""
    path = folder / "embeddings.safetensors"
    if not path.is_file():
        raise MMAlignError(
            "the run has no embeddings yet (interrupted?); resume it with `mmalign train --resume`",
            path=folder,
        )
    tensors = load_file(str(path))
    return tensors["kg1"], tensors["kg2"]


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one line; each record is written with a single write() so lines stay whole."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        handle.flush()
