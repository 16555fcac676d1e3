"""A local `evaluate` metric module: the harness's task metrics, computed offline.

`evaluate.load("accuracy")` needs the hub; this file loads with `evaluate.load(<path>)` and
computes every metric the tasks use with scikit-learn and scipy. Choose the metrics with
`config_name` ("accuracy,f1") or the `metrics=[...]` keyword of `compute`.

One import per line: evaluate's dependency scanner misreads `import a, b`.
"""

from __future__ import annotations

import math

import datasets
import evaluate
import numpy as np
from scipy import stats
from sklearn import metrics as skm

_DESCRIPTION = "Task metrics of electra-bench: " + ", ".join(
    ["accuracy", "f1", "f1_macro", "matthews_correlation", "pearson", "spearmanr"]
)
_INPUTS = """
predictions: class ids (classification) or scores (regression).
references: gold class ids or scores.
metrics (optional): list of metric names; default: the names in config_name.
"""


def _classes(values: np.ndarray) -> np.ndarray:
    return np.asarray(values).astype(np.int64)


def _correlation(fn, predictions: np.ndarray, references: np.ndarray) -> float:
    # Undefined for a constant input; score it 0 like sklearn's MCC so a collapsed model
    # gets a bad number rather than a NaN that poisons medians.
    p = np.asarray(predictions, dtype=np.float64)
    r = np.asarray(references, dtype=np.float64)
    if len(p) < 2 or np.ptp(p) == 0 or np.ptp(r) == 0:
        return 0.0
    value = float(fn(p, r)[0])
    return 0.0 if math.isnan(value) else value


def accuracy(predictions, references) -> float:
    return float(skm.accuracy_score(_classes(references), _classes(predictions)))


def f1(predictions, references) -> float:
    # Binary F1 of class 1 (GLUE's MRPC/QQP convention).
    return float(skm.f1_score(_classes(references), _classes(predictions), average="binary", zero_division=0))


def f1_macro(predictions, references) -> float:
    return float(skm.f1_score(_classes(references), _classes(predictions), average="macro", zero_division=0))


def matthews_correlation(predictions, references) -> float:
    return float(skm.matthews_corrcoef(_classes(references), _classes(predictions)))


def pearson(predictions, references) -> float:
    return _correlation(stats.pearsonr, predictions, references)


def spearmanr(predictions, references) -> float:
    return _correlation(stats.spearmanr, predictions, references)


METRICS = {
    "accuracy": accuracy,
    "f1": f1,
    "f1_macro": f1_macro,
    "matthews_correlation": matthews_correlation,
    "pearson": pearson,
    "spearmanr": spearmanr,
}


def parse_names(config_name: str | None) -> list[str]:
    """"accuracy,f1" -> ["accuracy", "f1"]; None or "default" -> ["accuracy"]."""
    if not config_name or config_name == "default":
        return ["accuracy"]
    return [n.strip() for n in config_name.split(",") if n.strip()]


def compute(names, predictions, references) -> dict[str, float]:
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(METRICS)}")
    p = np.asarray(predictions)
    r = np.asarray(references)
    if p.shape != r.shape:
        raise ValueError(f"{p.shape[0] if p.ndim else 0} predictions for {r.shape[0] if r.ndim else 0} references")
    return {n: METRICS[n](p, r) for n in names}


class BenchMetric(evaluate.Metric):
    """accuracy, f1 (binary), f1_macro, matthews_correlation, pearson, spearmanr."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            # float64 carries both class ids and regression scores; classes are cast back.
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
        )

    def _compute(self, predictions, references, metrics=None) -> dict[str, float]:
        names = list(metrics) if metrics else parse_names(self.config_name)
        return compute(names, predictions, references)
