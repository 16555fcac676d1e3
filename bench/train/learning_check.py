"""Did a fine-tuning run learn the task? A finding about the run, recorded beside its score.

A run that predicts one class for every dev example (a constant, for regression), or whose score
is within noise of the task's trivial baseline, has not learned the task: its score says nothing
about the encoder it started from, so claims leave it out (bench.results.claims) and tables say why.

The trivial baseline is the headline metric of the prediction a model needs no input for: the
training set's majority class (classification) or its mean label (regression, whose correlation
metrics are then 0). "Within noise" is judged on the dev set itself: the score's margin over the
baseline, resampling the dev examples (a paired bootstrap, seeded), is not above NOISE_SE of its
standard errors.

What is stored (final metrics of the run, all numbers): `pred_classes` (distinct predicted
classes; regression: 1 or 2 for constant or varying), `trivial_score`, `trivial_margin_se`, and
`did_not_learn`, one of the codes below (0: it learned).
"""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np

# the codes stored as `did_not_learn` (bench.results.learning words them for tables and claims)
LEARNED, ONE_CLASS, CONSTANT, AT_BASELINE = 0, 1, 2, 3

NOISE_SE = 2.0  # a margin over the trivial baseline below 2 standard errors is noise
RESAMPLES = 200
SEED = 0

Scorer = Callable[[np.ndarray, np.ndarray], float]


def trivial_predictions(train_labels: Sequence[float], n: int, regression: bool) -> np.ndarray:
    """What a model that ignores its input predicts: the training majority class (lowest id on ties), or mean."""
    labels = np.asarray(train_labels, dtype=np.float64)
    if regression:
        return np.full(n, float(labels.mean()) if labels.size else 0.0)
    values, counts = np.unique(labels, return_counts=True)
    return np.full(n, values[np.argmax(counts)] if values.size else 0.0)


def _safe(score: Scorer, p: np.ndarray, r: np.ndarray) -> float:
    """A metric that is undefined for a constant prediction (a correlation) counts as 0: no signal."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy / numpy warn on the constant input we score on purpose
        value = float(score(p, r))
    return value if np.isfinite(value) else 0.0


def learning_check(predictions: Sequence[float], references: Sequence[float], train_labels: Sequence[float],
                   score: Scorer, *, regression: bool, resamples: int = RESAMPLES,
                   seed: int = SEED) -> dict[str, float]:
    """The run's learning record: pred_classes, trivial_score, trivial_margin_se, did_not_learn (a code)."""
    p, r = np.asarray(predictions, dtype=np.float64), np.asarray(references, dtype=np.float64)
    trivial = trivial_predictions(train_labels, len(r), regression)
    distinct = len(np.unique(p)) if not regression else (1 if np.ptp(p) == 0 else 2) if p.size else 0
    base = _safe(score, trivial, r)
    rng = np.random.default_rng(seed)
    margins = []
    for _ in range(resamples if len(r) > 1 else 0):
        i = rng.integers(0, len(r), len(r))
        margins.append(_safe(score, p[i], r[i]) - _safe(score, trivial[i], r[i]))
    se = float(np.std(margins, ddof=1)) if len(margins) > 1 else 0.0
    margin = _safe(score, p, r) - base
    if distinct <= 1:
        code = CONSTANT if regression else ONE_CLASS
    elif margin <= NOISE_SE * se:
        code = AT_BASELINE
    else:
        code = LEARNED
    return {"pred_classes": float(distinct), "trivial_score": base, "trivial_margin_se": se,
            "did_not_learn": float(code)}

