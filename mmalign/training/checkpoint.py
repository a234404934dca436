"""A member's checkpoint: everything ``--resume`` needs to continue exactly where it stopped.

``checkpoint.safetensors`` holds the tensors (model, optimiser moments, pseudo pairs and
window candidates); ``checkpoint.json`` the scalars (epoch, selection state, optimiser steps
and groups, both random generators). Both are written atomically, tensors first, so a crash
leaves the previous checkpoint whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from safetensors.torch import load_file

from mmalign.atomic import atomic_write_json
from mmalign.run import atomic_save_tensors, read_json
from mmalign.training.pseudo import PseudoLabeller
from mmalign.training.selection import Selector


class Trainer(Protocol):
    """What a checkpoint holds of a trainer (:class:`mmalign.training.loop.Trainer` has it)."""

    folder: Path
    device: torch.device
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    pseudo: PseudoLabeller
    selector: Selector
    generator: np.random.Generator
    epoch: int

TENSORS, SCALARS = "checkpoint.safetensors", "checkpoint.json"


def has_checkpoint(folder: Path) -> bool:
    return (folder / TENSORS).is_file() and (folder / SCALARS).is_file()


def save_checkpoint(trainer: Trainer) -> None:
    tensors = {f"model.{k}": v for k, v in trainer.model.state_dict().items()}
    optimizer = trainer.optimizer.state_dict()
    scalars: dict[str, Any] = {"param_groups": optimizer["param_groups"], "steps": {}}
    for index, state in optimizer["state"].items():
        for key, value in state.items():
            if key == "step":
                scalars["steps"][str(index)] = float(value)
            else:
                tensors[f"optimizer.{index}.{key}"] = value
    tensors.update(trainer.pseudo.state())
    atomic_save_tensors(trainer.folder / TENSORS, tensors)
    atomic_write_json(trainer.folder / SCALARS, {
        "epoch": trainer.epoch, **trainer.selector.state(), "optimizer": scalars,
        "rng": {"numpy": trainer.generator.bit_generator.state, "torch": torch.get_rng_state().tolist()},
    })


def saved_pseudo_pairs(folder: Path) -> np.ndarray:
    """The pseudo pairs of the last checkpoint in ``folder`` (a finished member's: its final ones)."""
    pairs = load_file(str(folder / TENSORS))["pseudo"]
    return pairs.numpy().astype(np.int64).reshape(-1, 2)


def load_checkpoint(trainer: Trainer) -> None:
    tensors = load_file(str(trainer.folder / TENSORS))
    meta = read_json(trainer.folder / SCALARS)
    trainer.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value.to(trainer.device)
    for index, step in meta["optimizer"]["steps"].items():
        state.setdefault(int(index), {})["step"] = torch.tensor(step)
    trainer.optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer"]["param_groups"]})
    trainer.pseudo.load_state(tensors)
    trainer.epoch = meta["epoch"]
    trainer.selector.load_state(meta)
    trainer.generator.bit_generator.state = meta["rng"]["numpy"]
    torch.set_rng_state(torch.tensor(meta["rng"]["torch"], dtype=torch.uint8))
