"""One child process of a benchmark, measured: wall seconds, peak RSS and CPU seconds.

The benchmarks run each step (``python -m mmalign ingest ...``, a training, a stage of their
own) in a child process, as a user would, so import time counts and every step starts from a
fresh heap. The peak RSS is the child's own ``ru_maxrss`` from ``os.wait4`` (the per-child form
of ``getrusage(RUSAGE_CHILDREN)``, which would mix the children). Linux carries a parent's RSS
high-water mark across fork and exec into the child's ``ru_maxrss``, so callers import torch
(``mmalign.machine`` imports it) only after their children ran, or torch's footprint counts in
every child's peak. CPU seconds (user + system) show the work done even when other processes
share the machine and stretch the wall time.

Every child gets ``PYTHONPATH`` set to this checkout's root, so it imports the checkout's
code, installed or not, and ``HF_HUB_OFFLINE=1``, so no model is fetched while it is timed.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Measured:
    """What one child took; ``stdout`` is its standard output when asked for (``subprocess.PIPE``)."""

    seconds: float
    peak_mb: float
    cpu_seconds: float
    stdout: str | None = None


def run_child(command: list[str], *, stdout: Any = None, env: dict[str, str] | None = None) -> Measured:
    """Run ``command`` to its end and measure it; a failure stops the benchmark (``SystemExit``).

    ``stdout``: where the child's standard output goes (default ours; ``subprocess.DEVNULL``
    keeps it out of a table, an open file keeps it, ``subprocess.PIPE`` returns it as text in
    ``Measured.stdout``). ``env``: variables on top of ours, PYTHONPATH and HF_HUB_OFFLINE.
    """
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **(env or {})}
    start = time.perf_counter()
    process = subprocess.Popen(command, env=environment, stdout=stdout, text=True)
    out = None
    if process.stdout is not None:  # read before waiting, or a full pipe would block the child
        with process.stdout:
            out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    if process.returncode != 0:
        raise SystemExit(f"failed ({process.returncode}): {shlex.join(command)}")
    return Measured(seconds, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, out)  # ru_maxrss is in KiB on Linux
