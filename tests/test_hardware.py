"""Run-time hardware choices: the precision ``auto`` picks, and the machine line."""

from __future__ import annotations

import pytest
import torch

from mmalign import hardware
from mmalign.machine import machine_line
from mmalign.errors import MMAlignError


@pytest.fixture(autouse=True)
def fresh_choice():
    """``auto`` is decided once per process and device; each test decides again."""
    hardware._auto_precision.cache_clear()
    yield
    hardware._auto_precision.cache_clear()


def test_explicit_precisions_are_kept_and_unknown_ones_refused() -> None:
    cpu = torch.device("cpu")
    assert hardware.choose_precision("bf16", cpu).chosen == "bf16"
    assert hardware.choose_precision("fp32", cpu).dtype == torch.float32
    with pytest.raises(MMAlignError, match="unknown precision 'fp16'"):
        hardware.choose_precision("fp16", cpu)


def test_auto_stays_with_float32_where_the_cpu_emulates_bfloat16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "native_cpu_bf16", lambda: "")
    monkeypatch.setattr(hardware, "probe_seconds", lambda dtype: pytest.fail("no probe without native bfloat16"))
    choice = hardware.choose_precision("auto", torch.device("cpu"))
    assert (choice.requested, choice.chosen) == ("auto", "fp32")
    assert "no native bfloat16" in choice.why


@pytest.mark.parametrize("bf16_seconds, chosen", [(0.5, "bf16"), (0.95, "fp32")])
def test_auto_takes_native_bfloat16_only_when_the_probe_finds_it_faster(monkeypatch: pytest.MonkeyPatch,
                                                                         bf16_seconds: float, chosen: str) -> None:
    monkeypatch.setattr(hardware, "native_cpu_bf16", lambda: "AVX512_BF16")
    probes: list[torch.dtype] = []

    def probe(dtype: torch.dtype) -> float:
        probes.append(dtype)
        return bf16_seconds if dtype == torch.bfloat16 else 1.0

    monkeypatch.setattr(hardware, "probe_seconds", probe)
    first = hardware.choose_precision("auto", torch.device("cpu"))
    again = hardware.choose_precision("auto", torch.device("cpu"))
    assert first.chosen == again.chosen == chosen and "probe" in first.why
    assert probes == [torch.float32, torch.bfloat16]  # once per process


def test_probe_times_a_real_product() -> None:
    assert 0 < hardware.probe_seconds(torch.float32, repeats=1) < 10


def test_machine_line_names_cpu_capability_threads_precision_and_commit() -> None:
    line = machine_line("fp32", threads=2)
    assert line.startswith("machine: ")
    for part in (torch.backends.cpu.get_cpu_capability(), "2 threads", "precision fp32", "commit ", f"torch {torch.__version__}"):
        assert part in line, part
