"""Runs that did not learn: the codes a fine-tuning run stores (`did_not_learn`) and what they mean.

bench.train.learning_check computes them when a run is evaluated (and defines the numbers: 0 learned, 1 one
class, 2 constant, 3 at the trivial baseline); tables and claims read them here.
A run stored before the check existed has no code and counts as learned (nothing is known against it).
"""

from __future__ import annotations

from typing import Any, Mapping

LEARNED, ONE_CLASS, CONSTANT, AT_BASELINE = 0, 1, 2, 3
REASONS = {ONE_CLASS: "every dev prediction is one class", CONSTANT: "every dev prediction is the same value",
           AT_BASELINE: "its score is within noise of the trivial baseline"}


def reason(metrics: Mapping[str, Any]) -> str:
    """Why a run did not learn, in words ('' when it did, or when the run predates the check)."""
    code = metrics.get("did_not_learn")
    if code is None or code != code or int(code) == LEARNED:
        return ""
    text = REASONS.get(int(code), "did not learn")
    base = metrics.get("trivial_score")
    if int(code) == AT_BASELINE and base is not None and base == base:
        text += f" ({float(base):.4f})"
    return text
