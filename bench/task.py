"""The contract every task adapter (in `tasks/`) fulfils.

A task declares its **kind** (`TaskSpec.kind`); fine-tuning gives every backend's encoder the same
head for a kind, and the kind fixes the columns `load` returns and what `compute_metrics` receives:

- `"sentence"` (GLUE, CSV/JSONL tables): columns `spec.text_fields` (one text or a pair) plus `label`
  (int, or float for regression, `num_labels` = 1). Head: `[CLS]` -> dropout -> linear.
  `compute_metrics(predictions, references)`: arrays of class ids (or scores).
- `"token"` (tagging, e.g. NER): columns `tokens` (list of words) and `tags` (list of ids into
  `spec.label_names`, BIO tags such as "B-person"). Head: every token's hidden state -> dropout ->
  linear; each word is labelled on its first sub-token, the others are ignored in the loss (-100).
  `compute_metrics(predictions, references)`: lists (one per sentence) of tag-name lists, one tag per
  word; `TokenTask` computes entity-level precision/recall/F1 (conlleval / seqeval: exact span and type).
- `"span"` (extractive QA, SQuAD): columns `id`, `question`, `context` and `answers`
  (`{"text": [...], "answer_start": [...]}`, character offsets into `context`; empty lists: no answer,
  SQuAD 2.0, which sets `spec.no_answer`). Head: start/end logits over the context (and, with
  `no_answer`, the ELECTRA code's answerable classifier). Long contexts are split into windows.
  `compute_metrics(predictions, references, no_answer_scores=None)`: predicted answer texts, the
  reference answer texts per question, and (SQuAD 2.0) each question's no-answer score; `SpanTask`
  computes the official scripts' F1 and exact match.

A third-party task of any kind registers the same way (entry-point group `bench.tasks`, an object
with `spec`, `load`, `compute_metrics`); subclassing `TokenTask` or `SpanTask` gives the metrics.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from bench.errors import ConfigError

FINGERPRINT_BATCH_ROWS = 10_000
TASK_KINDS = ("sentence", "token", "span")  # rows converted to Python per step when hashing a loaded split


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
    # "sentence" (default), "token" (tagging) or "span" (extractive QA): see the module docstring.
    kind: str = "sentence"
    # token tasks: tag names, index = tag id ("O", "B-person", ...); num_labels = len(label_names)
    label_names: tuple[str, ...] = ()
    # span tasks: questions may have no answer (SQuAD 2.0): the head adds the answerable classifier
    no_answer: bool = False

    def __post_init__(self) -> None:
        if self.kind not in TASK_KINDS:
            raise ConfigError(f"task {self.name!r}: kind = {self.kind!r} is not one of {', '.join(TASK_KINDS)}")
        if self.kind == "token":
            if not self.label_names or len(self.label_names) != self.num_labels:
                raise ConfigError(f"task {self.name!r}: a token task needs label_names, one per label "
                                  f"(num_labels = {self.num_labels}, {len(self.label_names)} names)")
            if self.text_fields != ("tokens",):
                raise ConfigError(f"task {self.name!r}: a token task's text field is 'tokens', not {self.text_fields}")
        if self.kind == "span" and self.text_fields != ("question", "context"):
            raise ConfigError(f"task {self.name!r}: a span task's text fields are ('question', 'context'), "
                              f"not {self.text_fields}")
        if self.no_answer and self.kind != "span":
            raise ConfigError(f"task {self.name!r}: no_answer applies to span tasks only")
        if not (self.label_scale > 0 and math.isfinite(self.label_scale)):
            raise ConfigError(f"task {self.name!r}: label_scale = {self.label_scale!r} must be a finite number > 0")
        if self.label_scale != 1.0 and not self.is_regression:
            raise ConfigError(f"task {self.name!r}: label_scale applies to regression tasks only (num_labels = 1)")
        if self.symmetric_pairs and len(self.text_fields) != 2:
            raise ConfigError(f"task {self.name!r}: symmetric_pairs needs two text fields, not {len(self.text_fields)}")

    @property
    def is_regression(self) -> bool:
        return self.kind == "sentence" and self.num_labels == 1

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


class TokenTask(Task):
    """A tagging task (kind "token"): entity-level precision, recall and F1 (conlleval / seqeval)."""

    def compute_metrics(self, predictions, references) -> dict[str, float]:
        from bench.metrics.entities import entity_scores

        scores = entity_scores(predictions, references)
        return {name: scores[name] for name in self.spec.metrics}


class SpanTask(Task):
    """An extractive QA task (kind "span"): the official SQuAD F1 and exact match (and, for SQuAD 2.0,
    the scores at the ELECTRA code's no-answer threshold and at the best one)."""

    def compute_metrics(self, predictions, references, no_answer_scores=None) -> dict[str, float]:
        from bench.metrics.squad import squad_scores

        scores = squad_scores(predictions, references, no_answer_scores if self.spec.no_answer else None)
        return {name: scores[name] for name in self.spec.metrics}


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
