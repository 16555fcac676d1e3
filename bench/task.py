"""The contract every task adapter (in `tasks/`) fulfils."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from bench.errors import ConfigError

FINGERPRINT_BATCH_ROWS = 10_000  # rows converted to Python per step when hashing a loaded split


@dataclass(frozen=True)
class TaskSpec:
    """Static facts about a task.

    `text_fields` has one name (single sentence) or two (a pair). `num_labels` = 1 means
    regression. `metrics` lists metric names with the headline first. Loaded datasets always
    have the columns named in `text_fields` plus `label` (int, or float for regression).
    """

    name: str
    text_fields: tuple[str, ...]
    num_labels: int
    metrics: tuple[str, ...]
    description: str = ""
    # Per-task overrides of the fine-tuning protocol (e.g. epochs=10 for RTE/STS-B).
    finetune_overrides: dict[str, float | int] = field(default_factory=dict)
    # Evaluation splits -> suffix of their metric names: MNLI adds
    # {"dev_mismatched": "_mismatched"}, so it reports accuracy and accuracy_mismatched.
    eval_splits: dict[str, str] = field(default_factory=lambda: {"dev": ""})
    # Regression only: fine-tuning trains on label / label_scale and multiplies predictions back
    # before any metric, so metrics stay on the data's scale (STS-B: 5.0, scores 0-5 -> [0, 1], as
    # the ELECTRA code's RegressionTask does).
    label_scale: float = 1.0
    # Pair tasks whose label ignores the pairs' order (MRPC, STS-B): fine-tuning adds every training
    # pair again with its two texts swapped (the ELECTRA code's double_unordered); eval splits untouched.
    symmetric_pairs: bool = False

    def __post_init__(self) -> None:
        if not (self.label_scale > 0 and math.isfinite(self.label_scale)):
            raise ConfigError(f"task {self.name!r}: label_scale = {self.label_scale!r} must be a finite number > 0")
        if self.label_scale != 1.0 and not self.is_regression:
            raise ConfigError(f"task {self.name!r}: label_scale applies to regression tasks only (num_labels = 1)")
        if self.symmetric_pairs and len(self.text_fields) != 2:
            raise ConfigError(f"task {self.name!r}: symmetric_pairs needs two text fields, not {len(self.text_fields)}")

    @property
    def is_regression(self) -> bool:
        return self.num_labels == 1

    @property
    def headline(self) -> str:
        return self.metrics[0]

    @property
    def reported_metrics(self) -> tuple[str, ...]:
        """Every metric a fine-tuning run reports: `metrics` for each eval split, suffixed."""
        return tuple(m + suffix for suffix in self.eval_splits.values() for m in self.metrics)


class Task:
    """A task adapter instance, registered under `spec.name`.

    `load(split, data_dir)` returns a `datasets.Dataset` for "train", "dev" (or another
    split of `spec.eval_splits`) with the
    columns of `spec.text_fields` plus `label`; `compute_metrics` returns every metric of
    `spec.metrics` (headline first) as floats, for one split.
    `fingerprint(data_dir, cache_dir)` identifies the data a run would load (part of its id).
    """

    spec: TaskSpec

    def load(self, split: str, data_dir: Path | None) -> datasets.Dataset:
        raise NotImplementedError

    def fingerprint(self, data_dir: Path | None, cache_dir: Path | None = None) -> str:
        """A short hex digest of the data every split of the task loads ("train" + eval splits).

        Equal digests mean equal rows, labels and features, so a run's id changes when its task
        data does. This default works for any task: it loads each split and hashes its features
        and rows in order (not datasets' private `_fingerprint`, which depending on how a dataset
        was built, e.g. by a map with an unpicklable function, is random in every process).
        It reads all the data, so tasks backed by files override it with a hash of their files
        (bench.fingerprint.file_sha256, cached in `cache_dir`); `cache_dir` is unused here.
        """
        digest = hashlib.sha256()
        for split in ("train", *self.spec.eval_splits):
            digest.update(f"{split}\0{dataset_digest(self.load(split, data_dir))}\n".encode())
        return digest.hexdigest()[:16]

    def compute_metrics(self, predictions, references) -> dict[str, float]:
        raise NotImplementedError


def dataset_digest(dataset: datasets.Dataset) -> str:
    """sha256 of a dataset's features and rows: the same in every process, for the same data.

    Rows are read as Arrow -> Python values (no decoding of images or audio) and written as
    JSON per column and batch, so the digest depends only on values, their order and the
    features (label names included), never on Arrow's memory layout.
    """
    digest = hashlib.sha256(json.dumps(dataset.features.to_dict(), sort_keys=True).encode())
    columns = sorted(dataset.column_names)
    for batch in dataset.with_format("arrow").iter(batch_size=FINGERPRINT_BATCH_ROWS):
        for column in columns:
            values = batch.column(column).to_pylist()
            digest.update(json.dumps([column, values], default=_json_value, ensure_ascii=False).encode())
    return digest.hexdigest()


def _json_value(value: Any) -> str:
    """JSON stand-in for values json cannot write (bytes, dates, decimals): deterministic text."""
    return value.hex() if isinstance(value, bytes) else repr(value)
