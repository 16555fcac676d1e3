"""The learning-rate schedule shared by pretraining and fine-tuning."""

from __future__ import annotations

from typing import Callable


def linear_schedule(warmup: float, total: float) -> Callable[[float], float]:
    """ELECTRA's factor (google-research/electra optimization.py): linear decay to 0 at `total`,
    times a linear warm-up ramp over `warmup`. Units are steps, or seconds for a time budget."""

    def factor(t: float) -> float:
        ramp = min(1.0, t / warmup) if warmup > 0 else 1.0
        return ramp * max(0.0, 1.0 - t / total)

    return factor
