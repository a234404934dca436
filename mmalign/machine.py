"""The machine line: what a figure was measured on, printed above every benchmark table.

A time measured on one CPU says little about another: the same training ran many times slower
in bfloat16 on an AVX2-only CPU than on one with AVX-512 BF16 (docs/benchmarks.md, "On the
AMD EPYC, AVX2 only (2026-12-04)"). So every table names the CPU, torch's CPU capability,
the thread count, the precision the products ran in, and the commit.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import torch

from mmalign.hardware import choose_precision, cpu_model


def source_commit() -> str:
    """The checkout's commit (short, ``+dirty`` when changed), or ``unknown`` outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if commit.returncode != 0:
        return "unknown"
    return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def machine_line(precision: str | None = None, threads: int | None = None) -> str:
    """One line naming what a figure was measured on: put it above every table.

    ``precision``: the run's (``auto`` is resolved for the CPU); ``threads``: the thread count
    the measured process used (default: this process's torch threads).
    """
    if precision is None or precision == "auto":
        choice = choose_precision("auto", torch.device("cpu"))
        precision = f"auto -> {choice.chosen}"
    gpu = ""
    if torch.cuda.is_available():
        gpu = f" · GPU {torch.cuda.get_device_name(0)}"
    return (f"machine: {cpu_model()} · torch {torch.__version__} CPU capability {torch.backends.cpu.get_cpu_capability()}"
            f" · {threads or torch.get_num_threads()} threads · precision {precision}{gpu}"
            f" · commit {source_commit()}")
