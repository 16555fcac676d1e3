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


def triangle_schedule(peak: float, total: float, start: float = 0.25) -> Callable[[float], float]:
    """The one-cycle triangle of Cramming (Geiping & Goldstein 2023, their `budget-triangle2`): the
    factor rises linearly from `start` at 0 to 1 at `peak`, then falls linearly to 0 at `total`.
    With peak = 0.75 total and start 0.25 it is theirs exactly. Units are steps, or seconds."""

    def factor(t: float) -> float:
        up = start + (1.0 - start) * t / peak if peak > 0 else 1.0
        down = (total - t) / (total - peak) if total > peak else 1.0
        return max(0.0, min(1.0, up, down))

    return factor


def schedule_for(kind: str, warmup: float, total: float) -> Callable[[float], float]:
    """The schedule a recipe names (bench.objectives.recipe.SCHEDULES): `linear` (ELECTRA's) or `triangle`
    (Cramming's, peaking where the warm-up share ends)."""
    if kind == "linear":
        return linear_schedule(warmup, total)
    if kind == "triangle":
        from bench.objectives.recipe import TRIANGLE_START

        return triangle_schedule(warmup, total, TRIANGLE_START)
    raise ValueError(f"unknown learning-rate schedule {kind!r}: linear or triangle")
