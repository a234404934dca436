"""What the machine can do, found out at run time: its CPU, and the precision of the big products.

bfloat16 halves memory traffic and, where the hardware multiplies it natively (CUDA GPUs from
Ampere on; CPUs with AVX512_BF16 or AMX), runs the big dense products several times faster
than float32 (docs/benchmarks.md, "Memory and speed of the training step"). Where it does not
(AVX2-only CPUs, most laptops and many servers), torch emulates it and the same product is
many times *slower* (docs/benchmarks.md, "On the AMD EPYC, AVX2 only (2026-12-04)"). A
default therefore cannot be a fixed dtype: ``auto`` picks bfloat16 only where the hardware has
it natively and a probe of a small matrix product in both dtypes confirms it is faster,
float32 everywhere else, and says why. The choice is made once per process and device.
"""

from __future__ import annotations

import functools
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from mmalign.settings import Choice


class Precision(Choice):
    """``--precision``: ``auto`` resolves to one of the other two (:func:`choose_precision`)."""

    AUTO = "auto"
    BF16 = "bf16"
    FP32 = "fp32"


PROBE_SHAPE = (1024, 256, 1024)
"""(rows, inner, columns) of the probe's product: the loss's and the search's shape class, small
enough that both dtypes together take well under a second even where bfloat16 is emulated."""

PROBE_MIN_SPEEDUP = 1.2
"""bfloat16 must beat float32 by this factor in the probe to be chosen: it also costs accuracy
(8 mantissa bits), which is only worth paying for a clear gain."""


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run computes its big products in, and why (stored in config.json)."""

    requested: str
    chosen: str  # bf16 | fp32
    why: str

    @property
    def dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.chosen == "bf16" else torch.float32

    def as_dict(self) -> dict[str, str]:
        return {"requested": self.requested, "chosen": self.chosen, "why": self.why}


def choose_precision(requested: str, device: torch.device) -> PrecisionChoice:
    """Resolve ``--precision`` for ``device``; ``bf16``/``fp32`` are kept as asked.

    An unknown value is an MMAlignError naming the choices (the config checks it earlier).
    """
    requested = Precision.parse(requested, "precision").value
    if requested != "auto":
        return PrecisionChoice(requested, requested, "asked for")
    chosen, why = _auto_precision(str(device))
    return PrecisionChoice(requested, chosen, why)


@functools.cache
def _auto_precision(device: str) -> tuple[str, str]:
    """(chosen, why) for a device; cached, so the probe runs at most once per process and device."""
    target = torch.device(device)
    if target.type == "cuda":
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return "bf16", f"{torch.cuda.get_device_name(target)} multiplies bfloat16 natively"
        return "fp32", f"{torch.cuda.get_device_name(target)} has no native bfloat16"
    if target.type != "cpu":
        return "fp32", f"no bfloat16 rule for device type {target.type!r}"
    native = native_cpu_bf16()
    if not native:
        return "fp32", f"CPU capability {torch.backends.cpu.get_cpu_capability()} has no native bfloat16"
    fp32, bf16 = probe_seconds(torch.float32), probe_seconds(torch.bfloat16)
    speedup = fp32 / bf16
    if speedup >= PROBE_MIN_SPEEDUP:
        return "bf16", f"CPU has {native}; probe: bfloat16 {speedup:.1f}x faster than float32"
    return "fp32", f"CPU has {native}, but probe: bfloat16 only {speedup:.2f}x float32's speed"


def native_cpu_bf16() -> str:
    """The CPU feature that multiplies bfloat16 natively (``AMX``, ``AVX512_BF16``), or ''.

    torch's private feature checks are used where they exist (x86); elsewhere nothing is
    claimed and ``auto`` stays with float32.
    """
    cpu = torch.cpu
    for name, check in (("AMX", "_is_amx_tile_supported"), ("AVX512_BF16", "_is_avx512_bf16_supported")):
        probe = getattr(cpu, check, None)
        if probe is not None and probe():
            return name
    return ""


def probe_seconds(dtype: torch.dtype, repeats: int = 3) -> float:
    """Best of ``repeats`` timings of the probe product on the CPU in ``dtype``, after a warm-up."""
    rows, inner, columns = PROBE_SHAPE
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(rows, inner, generator=generator).to(dtype)
    b = torch.randn(inner, columns, generator=generator).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return best


def cpuinfo(key: str) -> str:
    """The first ``key`` line's value in ``/proc/cpuinfo`` (Linux), or '' where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.split(":", 1)[0].strip() == key:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def cpu_model() -> str:
    """The CPU's marketing name, and its family and model where the name is as vague as a VM's."""
    name = cpuinfo("model name") or platform.processor() or platform.machine() or "unknown CPU"
    family, model = cpuinfo("cpu family"), cpuinfo("model")
    return f"{name} (family {family}, model {model})" if family and model else name
