"""The contract every task adapter (in `tasks/`) fulfils."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
import datasets


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
    """

    spec: TaskSpec

    def load(self, split: str, data_dir: Path | None) -> datasets.Dataset:
        raise NotImplementedError

    def compute_metrics(self, predictions, references) -> dict[str, float]:
        raise NotImplementedError
