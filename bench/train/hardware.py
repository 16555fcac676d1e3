"""The device side of a run: a fresh `accelerate.Accelerator`, the precision "auto" resolves to,
and peak FLOP/s for MFU.

Peak dense FLOP/s of common accelerators, for model-FLOPs utilisation (MFU): datasheet figures
without sparsity. MFU = achieved model FLOP/s (the `executed` count) / (processes x one device's
peak) for the precision the run used; a device missing here gets no MFU, never a guess, unless
the user gives its peak in BENCH_PEAK_FLOPS.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import ConfigError

if TYPE_CHECKING:
    from accelerate import Accelerator

# bf16 autocast for `pretrain.precision = "auto"` on a CPU whose flags show native bf16 (CPU_BF16_FLAGS).
# Native bf16 makes bf16 possible, not necessarily faster: on a small model the casts around every
# matmul and the fp32 optimiser can cost more than the bf16 dot products save. So the CPU decision
# is explicit and measured: benchmarks/precision.py prints fp32 and bf16 side by side (pretraining
# steps and a fine-tuning run) on the machine; set this to True only where it showed bf16 faster
# at an unchanged dev score, and say so in the commit. Until measured: False (auto = fp32 on a CPU).
# `pretrain.precision = "bf16"` forces bf16 anywhere, whatever this says.
CPU_BF16 = False
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of native bf16 dot products (AVX512-BF16, AMX)
CPUINFO = Path("/proc/cpuinfo")

# (substring of torch.cuda.get_device_name(), {precision: peak FLOP/s}); the longest matching name wins
PEAK_FLOPS: list[tuple[str, dict[str, float]]] = [
    ("H200", {"bf16": 989e12, "fp16": 989e12, "tf32": 494.5e12, "fp32": 66.9e12}),
    ("H100 PCIe", {"bf16": 756e12, "fp16": 756e12, "tf32": 378e12, "fp32": 51.2e12}),
    ("H100 NVL", {"bf16": 835.5e12, "fp16": 835.5e12, "tf32": 417.5e12, "fp32": 60e12}),
    ("H100", {"bf16": 989e12, "fp16": 989e12, "tf32": 494.5e12, "fp32": 66.9e12}),  # SXM
    ("A100", {"bf16": 312e12, "fp16": 312e12, "tf32": 156e12, "fp32": 19.5e12}),
    ("L40S", {"bf16": 362e12, "fp16": 362e12, "tf32": 183e12, "fp32": 91.6e12}),
    ("L40", {"bf16": 181e12, "fp16": 181e12, "tf32": 90.5e12, "fp32": 90.5e12}),
    ("A10", {"bf16": 125e12, "fp16": 125e12, "tf32": 62.5e12, "fp32": 31.2e12}),
    ("L4", {"bf16": 121e12, "fp16": 121e12, "tf32": 60e12, "fp32": 30.3e12}),
    ("V100", {"fp16": 125e12, "fp32": 15.7e12}),
    ("RTX 4090", {"bf16": 165e12, "fp16": 165e12, "tf32": 82.6e12, "fp32": 82.6e12}),
    ("RTX 3090", {"bf16": 71e12, "fp16": 71e12, "tf32": 35.6e12, "fp32": 35.6e12}),
]


def peak_flops(device_name: str, precision: str) -> float | None:
    """Peak FLOP/s of `device_name` at `precision` (bf16, fp16, tf32, fp32), or None if unknown.

    The longest table name found in `device_name` wins, so "NVIDIA H100 NVL" is not read as the
    SXM "H100", nor "NVIDIA L40" as "L4"."""
    name = device_name.lower()
    found = [(key, peaks) for key, peaks in PEAK_FLOPS if key.lower() in name]
    if not found:
        return None
    return max(found, key=lambda kv: len(kv[0]))[1].get(precision)


PEAK_ENV = "BENCH_PEAK_FLOPS"  # one device's peak FLOP/s at the run's precision, e.g. 1.5e14


def peak_override() -> float | None:
    """One device's peak FLOP/s from BENCH_PEAK_FLOPS (for a device the table lacks, or a CPU), or None."""
    raw = os.environ.get(PEAK_ENV, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ConfigError(f"{PEAK_ENV} = {raw!r} is not a positive number of FLOP/s; set it to one device's "
                          f"peak at the run's precision (e.g. {PEAK_ENV}=9.89e14 for an H100 in bf16), or unset it")
    return value


def mfu(achieved_flops_per_s: float, peak_per_device: float | None, world_size: int) -> float | None:
    """Model-FLOPs utilisation: the FLOP/s of the global batch over the peak of all `world_size` devices."""
    if not peak_per_device:
        return None
    return achieved_flops_per_s / (world_size * peak_per_device)


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags (the first `flags` line of /proc/cpuinfo, or of the text given); empty
    where there is none (macOS, Windows, a container hiding it)."""
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def cpu_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX-BF16 in its flags)."""
    return bool(cpu_flags(cpuinfo) & set(CPU_BF16_FLAGS))


def resolve_precision(precision: str, *, cuda: bool | None = None, cpu_bf16: bool | None = None,
                      cpuinfo: str | None = None) -> str:
    """What `pretrain.precision` means on this machine: "bf16" or "fp32".

    "bf16" and "fp32" are taken as given. "auto": bf16 on a GPU that supports it; on a CPU, bf16
    only where the CPU has native bf16 AND `cpu_bf16` (default CPU_BF16, decided by
    benchmarks/precision.py) says it was measured faster; fp32 otherwise."""
    if precision in ("bf16", "fp32"):
        return precision
    if precision != "auto":
        raise ValueError(f"precision must be auto, fp32 or bf16, got {precision!r}")
    import torch

    if cuda is None:
        cuda = torch.cuda.is_available()
    if cuda:
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    wanted = CPU_BF16 if cpu_bf16 is None else cpu_bf16
    return "bf16" if wanted and cpu_native_bf16(cpuinfo) else "fp32"


def fresh_accelerator(**kwargs: Any) -> Accelerator:
    """An `Accelerator` with exactly the settings given (mixed precision included).

    accelerate keeps one process-wide state: an Accelerator made with `mixed_precision=None` inherits
    an earlier one's bf16, and one that names another precision raises. Resetting that state (not
    the process group, which stays) makes each phase run in the precision its own settings name."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    return Accelerator(**kwargs)
