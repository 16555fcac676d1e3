"""Task metrics, computed through the local `evaluate` module `bench_metric.py`.

`evaluate` takes seconds to import and its hub metrics are unreachable offline, so it is
imported lazily and loads the metric module from this folder by path.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Sequence

import numpy as np

METRIC_MODULE = Path(__file__).with_name("bench_metric.py")

# Every metric name the module computes (kept in step with bench_metric.METRICS).
KNOWN_METRICS: tuple[str, ...] = ("accuracy", "f1", "f1_macro", "matthews_correlation", "pearson", "spearmanr")
CLASSIFICATION_METRICS: frozenset[str] = frozenset({"accuracy", "f1", "f1_macro", "matthews_correlation"})
REGRESSION_METRICS: frozenset[str] = frozenset({"pearson", "spearmanr"})


@functools.lru_cache(maxsize=16)
def load_metric(names: tuple[str, ...]) -> Any:
    """The `evaluate` metric object computing `names` (cached per name tuple)."""
    import evaluate  # lazy: 4-8 s to import

    # keep_in_memory: no arrow cache files, so parallel processes do not collide.
    return evaluate.load(str(METRIC_MODULE), config_name=",".join(names), keep_in_memory=True)


def compute_metrics(names: Sequence[str], predictions, references) -> dict[str, float]:
    """{name: value} for each of `names`, in order. Classification metrics take class ids."""
    names = tuple(names)
    unknown = [n for n in names if n not in KNOWN_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}; known metrics: {', '.join(KNOWN_METRICS)}")
    metric = load_metric(names)
    result = metric.compute(
        predictions=np.asarray(predictions, dtype=np.float64), references=np.asarray(references, dtype=np.float64)
    )
    return {n: float(result[n]) for n in names}
