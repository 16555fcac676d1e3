"""Peak memory is per run: a run after a larger one must not report the larger one's peak."""

from __future__ import annotations

import pytest
import torch

from bench.train.memory import peak_memory_mb, reset_peak_memory


def test_a_runs_peak_does_not_inherit_an_earlier_larger_one():
    if not reset_peak_memory():
        pytest.skip("this kernel cannot reset the peak resident set (/proc/self/clear_refs is not writable)")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    big = torch.ones(64 * 2**20, device=device)  # 256 MiB, touched: resident
    first = peak_memory_mb()
    del big
    assert reset_peak_memory()
    small = torch.ones(2**20, device=device)  # 4 MiB
    second = peak_memory_mb()
    del small
    assert first - second > 200, (first, second)  # the 256 MiB of the "earlier run" are not in this one's peak
