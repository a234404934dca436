"""Training in several processes (``torchrun``): who this process is, and the few collectives used.

``mmalign train`` under ``torchrun`` (or any launcher that sets ``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``) trains one run with several processes,
on one machine or many. Distribution is not a setting of the model: it is read from the
environment, and with ``WORLD_SIZE`` unset or 1 nothing here starts a process group and every
helper is the identity, so a one-process run computes exactly what it always did.

What is split: an update's loss chunks, chunk ``i`` to rank ``i % world_size``
(:func:`my_chunks`). Every rank runs the same full-graph forward, the loss of its own chunks
and one backward through the model; the parameter gradients and the loss are then summed over
the ranks (:func:`all_reduce_gradients`), so every rank takes the same optimiser step and the
parameters stay bit-for-bit equal on every rank, even where two machines' forwards differ in
the last bits (only the summed gradient reaches the parameters, and it is the same everywhere).

What rank 0 alone does: the pseudo-pair search, validation and every file of the run folder.
Its pseudo pairs, its validation metrics (hence model selection and early stopping), its run
folder, splits and precision are broadcast (:func:`broadcast_object`), so float-level
differences between ranks can never make them disagree about what to do next.

Backend: gloo on the CPU, nccl on CUDA (``--gpu N``: local rank ``r`` uses ``cuda:N+r``).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Iterable, Iterator, TypeVar

import torch
import torch.distributed as dist

from mmalign.errors import MMAlignError

T = TypeVar("T")

TIMEOUT = timedelta(hours=1)
"""How long a rank waits in a collective: the other ranks wait while rank 0 alone validates and
searches for pseudo pairs, which on a big pair takes minutes (nccl's default is 10). A rank that
fails ends the others sooner: torchrun stops the whole group when one process exits with an error."""


def world_size() -> int:
    """Processes in the run, from ``WORLD_SIZE`` (1 when unset: no distribution)."""
    return _env_int("WORLD_SIZE", 1)


def rank() -> int:
    """This process's rank, from ``RANK`` (0 when unset)."""
    return _env_int("RANK", 0) if world_size() > 1 else 0


def local_rank() -> int:
    """This process's rank on its machine, from ``LOCAL_RANK`` (its GPU offset with ``--gpu``)."""
    return _env_int("LOCAL_RANK", 0) if world_size() > 1 else 0


def is_main() -> bool:
    """Whether this process is rank 0: the one that reports, searches, validates and writes files."""
    return rank() == 0


def active() -> bool:
    """Whether a process group of several ranks is up (inside :func:`session`)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def backend() -> str | None:
    """The process group's backend (gloo or nccl), None without one."""
    return dist.get_backend() if active() else None


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise MMAlignError(f"{name} must be a whole number (set by torchrun), got {value!r}") from None


def gpu_for_rank(gpu: int) -> int:
    """The CUDA device of this process for ``--gpu gpu``: ``gpu + LOCAL_RANK`` (the node's ranks take
    consecutive GPUs from ``gpu``), checked against the GPUs visible."""
    if world_size() == 1:
        return gpu
    device = gpu + local_rank()
    if torch.cuda.is_available() and device >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise MMAlignError(f"--gpu {gpu} under torchrun: local rank {local_rank()} needs cuda:{device}, but only {count} "
                           f"CUDA device(s) are visible; start at most {max(count - gpu, 0)} processes per node (--nproc_per_node)")
    return device


@contextmanager
def session(device: torch.device) -> Iterator[None]:
    """The process group for the length of one training run (none with one process).

    Started here, not at import, because the backend follows the run's device, and torn down
    at the end so a later run in the same process (the tests) starts clean. A group someone
    else started (a caller that initialised torch.distributed itself) is used and left up.
    """
    if world_size() == 1 or (dist.is_available() and dist.is_initialized()):
        yield
        return
    if not dist.is_available():
        raise MMAlignError("WORLD_SIZE > 1, but this torch build has no torch.distributed")
    missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if missing:
        raise MMAlignError(f"WORLD_SIZE={world_size()} but {', '.join(missing)} unset: start several processes with torchrun")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device, timeout=TIMEOUT)
    else:
        dist.init_process_group("gloo", timeout=TIMEOUT)
    try:
        yield
        # Every rank reaches the teardown before any closes its connections: once in CI a
        # rank aborted in teardown (SIGABRT, "terminate called without an active exception")
        # after a complete 2-rank run, while rank 0 was still writing the run folder.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def my_chunks(n_chunks: int, rank_: int | None = None, world: int | None = None) -> list[int]:
    """The loss chunks of an update that ``rank_`` computes: ``i % world == rank_`` (round robin).

    Chunks are even in size (the step cuts them so), so round robin balances the ranks to within
    one chunk; every chunk belongs to exactly one rank.
    """
    rank_ = rank() if rank_ is None else rank_
    world = world_size() if world is None else world
    return list(range(rank_, n_chunks, world))


def all_reduce_gradients(parameters: Iterable[torch.nn.Parameter], loss: float, device: torch.device) -> float:
    """Sum every parameter's gradient and ``loss`` over the ranks, in place; returns the summed loss.

    Gradients go as one flat buffer per dtype (one collective each instead of one per tensor).
    Parameters without a gradient are left alone: the ranks run the same backward graph, so
    they are the same on every rank, and the optimiser skips them as it does in one process.
    """
    if not active():
        return loss
    groups: dict[torch.dtype, list[torch.Tensor]] = {}
    for parameter in parameters:
        if parameter.grad is not None:
            groups.setdefault(parameter.grad.dtype, []).append(parameter.grad)
    for grads in groups.values():
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()
    total = torch.tensor([loss], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return float(total.item())


def broadcast_object(value: T) -> T:
    """Rank 0's ``value`` on every rank (any picklable object); ``value`` itself with one process.

    Used for every decision the ranks must agree on: the run folder, the splits, the precision,
    the pseudo pairs, validation metrics, and a member's result.
    """
    if not active():
        return value
    box: list[Any] = [value if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank (the ranks start from the same model)."""
    if not active():
        return
    for tensor in module.state_dict().values():
        dist.broadcast(tensor, src=0)


def sync_torch_rng() -> None:
    """Rank 0's torch random state on every rank, so dropout masks stay equal after work only rank 0 did."""
    if not active():
        return
    torch.set_rng_state(broadcast_object(torch.get_rng_state()))


def record() -> dict[str, Any]:
    """``{"world_size", "backend"}`` for config.json and summary.json."""
    return {"world_size": dist.get_world_size() if active() else 1, "backend": backend()}
