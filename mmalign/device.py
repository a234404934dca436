"""``--gpu N`` for every command: the one place that turns a GPU number into a torch device."""

from __future__ import annotations

import torch

from mmalign.errors import MMAlignError


def resolve_device(gpu: int | None) -> torch.device:
    """``--gpu N`` → ``cuda:N``, checked now: a missing GPU is a user error, not a traceback."""
    if gpu is None:
        return torch.device("cpu")
    if gpu < 0:
        raise MMAlignError(f"--gpu must be a device number (0, 1, ...), not {gpu}")
    if not torch.cuda.is_available():
        why = "this torch build has no CUDA support" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise MMAlignError(f"--gpu {gpu}: {why}; leave out --gpu to run on the CPU")
    count = torch.cuda.device_count()
    if gpu >= count:
        raise MMAlignError(f"--gpu {gpu}: only {count} CUDA device(s) visible (0..{count - 1})")
    return torch.device(f"cuda:{gpu}")
