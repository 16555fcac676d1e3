"""Peak memory of one run, not of the process that happened to run it.

On a GPU: torch's allocator peak, reset at the start of a run. On a CPU the process's peak
resident set (`ru_maxrss`) only ever grows, so every run after the first would inherit the
largest earlier one; on Linux the kernel's high-water mark (`VmHWM`) can be reset instead
(writing 5 to `/proc/self/clear_refs`, Linux >= 4.0). Where it cannot, the process's peak
is reported.
"""

from __future__ import annotations

import re
import resource
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak_memory() -> bool:
    """Start a new peak; False where it cannot be reset (the process's peak is reported then)."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        return True
    try:
        _CLEAR_REFS.write_text("5")  # resets VmHWM to the current resident set
    except OSError:
        return False
    return _vm_hwm_kib() is not None


def peak_memory_mb() -> float:
    """Peak memory (MiB) since the last `reset_peak_memory`: device memory on a GPU, else resident set."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    kib = _vm_hwm_kib()
    if kib is None:
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux reports KiB
    return kib / 1024


def _vm_hwm_kib() -> int | None:
    try:
        found = re.search(r"^VmHWM:\s+(\d+) kB", _STATUS.read_text(), re.M)
    except OSError:
        return None
    return int(found.group(1)) if found else None
