"""The nine GLUE tasks, read from a local GLUE-layout folder or, failing that, the hub.

Local files are the original GLUE TSVs (`<data_dir>/glue/<Folder>/{train,dev}.tsv`), whose
quirks are handled here: CoLA has no header line, MRPC starts with a UTF-8 BOM, and
sentences contain unbalanced quotes (so fields are split on tabs with no quoting, as
csv.QUOTE_NONE = 3). Loaded datasets use the hub's column names and label ids, so a run
gives the same dataset whichever source it came from.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import datasets

from bench.errors import DataError
from bench.fingerprint import file_sha256
from bench.metrics import compute_metrics
from bench.registry import register_task
from bench.task import Task, TaskSpec

log = logging.getLogger(__name__)

HUB_ID = "nyu-mll/glue"
# A file with more malformed rows than this is the wrong file, not a quirk of GLUE.
MAX_BAD_ROW_FRACTION = 0.01


@dataclass(frozen=True)
class GlueFormat:
    """Where a task's fields sit in its local TSVs."""

    folder: str
    columns: tuple[str, ...]  # TSV columns for the spec's text fields, in order
    label_column: str
    label_names: tuple[str, ...] = ()  # string labels in the TSV -> their index; empty: labels are ids
    class_names: tuple[str, ...] = ()  # display names of numeric labels (the hub's)
    has_header: bool = True
    positions: dict[str, int] | None = None  # for header-less files: column name -> index
    split_files: dict[str, str] | None = None  # split -> file name (default "<split>.tsv")
    hub_name: str = ""
    hub_splits: dict[str, str] | None = None  # split -> hub split (default train/validation)


class GlueTask(Task):
    """A GLUE task: local TSVs first, then the hub, else a DataError naming both."""

    def __init__(self, spec: TaskSpec, fmt: GlueFormat) -> None:
        self.spec = spec
        self.fmt = fmt
        self.description = spec.description

    def __repr__(self) -> str:
        return f"GlueTask({self.spec.name!r})"

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", *self.spec.eval_splits)

    def local_path(self, split: str, data_dir: Path | None) -> Path | None:
        """The TSV file of `split` under `data_dir` (None when no data_dir is known)."""
        data_dir = _resolve_data_dir(data_dir)
        if data_dir is None:
            return None
        name = (self.fmt.split_files or {}).get(split, f"{split}.tsv")
        return data_dir / "glue" / self.fmt.folder / name

    def fingerprint(self, data_dir: Path | None, cache_dir: Path | None = None) -> str:
        """Hash of what `load` reads for every split: a local TSV's bytes (sha256, cached in
        `cache_dir`), or for the hub fallback the hub id, config and split it would load."""
        digest = hashlib.sha256()
        for split in self.splits:
            path = self.local_path(split, data_dir)
            if path is not None and path.is_file():  # the same test as load: local first
                source = f"file\0{file_sha256(path, cache_dir)}"
            else:
                source = f"hub\0{HUB_ID}\0{self.fmt.hub_name}\0{self._hub_split(split)}"
            digest.update(f"{split}\0{source}\n".encode())
        return digest.hexdigest()[:16]

    def _hub_split(self, split: str) -> str:
        return (self.fmt.hub_splits or {}).get(split, "train" if split == "train" else "validation")

    def load(self, split: str, data_dir: Path | None) -> datasets.Dataset:
        if split not in self.splits:
            raise DataError(f"task {self.spec.name!r} has no split {split!r}; splits: {', '.join(self.splits)}")
        path = self.local_path(split, data_dir)
        if path is not None and path.is_file():
            return self.read_tsv(path)
        hub_split = self._hub_split(split)
        try:
            return self._load_hub(hub_split)
        except Exception as e:  # noqa: BLE001 - any hub failure becomes the same clear message
            tried = str(path) if path is not None else "(no data folder: BENCH_DATA_DIR is not set)"
            raise DataError(
                f"GLUE {self.fmt.folder} {split}: no local file at {tried}, and the hub dataset "
                f"{HUB_ID!r} (config {self.fmt.hub_name!r}, split {hub_split!r}) could not be loaded "
                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). Fix: set BENCH_DATA_DIR "
                f"or --data to a folder holding glue/{self.fmt.folder}/train.tsv and dev.tsv "
                f"(the GLUE download layout), or allow hub access."
            ) from e

    def _load_hub(self, hub_split: str) -> datasets.Dataset:
        ds = datasets.load_dataset(HUB_ID, self.fmt.hub_name, split=hub_split)
        # The hub already uses these column names and label ids; drop the rest (idx).
        keep = [*self.spec.text_fields, "label"]
        ds = ds.select_columns(keep)
        if self.spec.is_regression:
            ds = ds.cast_column("label", datasets.Value("float32"))
        return ds

    def read_tsv(self, path: Path) -> datasets.Dataset:
        """Parse one GLUE TSV into text columns + label, skipping malformed rows (as the hub does)."""
        fmt = self.fmt
        texts: dict[str, list[str]] = {f: [] for f in self.spec.text_fields}
        labels: list[int | float] = []
        bad: list[int] = []
        # utf-8-sig drops MRPC's BOM so its first column is "Quality", not "\ufeffQuality".
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            if fmt.has_header:
                header = next(reader, None) or []
                missing = [c for c in (*fmt.columns, fmt.label_column) if c not in header]
                if missing:
                    raise DataError(
                        f"{path}: expected GLUE {fmt.folder} columns {', '.join(missing)} in the header; "
                        f"found: {', '.join(header) or '(empty file)'}"
                    )
                index = {c: header.index(c) for c in (*fmt.columns, fmt.label_column)}
            else:
                assert fmt.positions is not None
                index = fmt.positions
            need = max(index.values()) + 1
            first_line = 2 if fmt.has_header else 1
            for line, row in enumerate(reader, start=first_line):
                if not row:
                    continue
                label = _parse_label(row[index[fmt.label_column]], fmt, self.spec) if len(row) >= need else None
                if label is None:
                    bad.append(line)
                    continue
                for field_name, column in zip(self.spec.text_fields, fmt.columns):
                    texts[field_name].append(row[index[column]])
                labels.append(label)
        total = len(labels) + len(bad)
        if total == 0:
            raise DataError(f"{path}: no data rows")
        if bad:
            if len(bad) > MAX_BAD_ROW_FRACTION * total:
                raise DataError(
                    f"{path}: {len(bad)} of {total} rows are malformed (first at line {bad[0]}): "
                    f"is this the GLUE {fmt.folder} file?"
                )
            log.warning("%s: skipped %d malformed row(s) (lines %s)", path, len(bad), ", ".join(map(str, bad[:5])))
        label_feature = (
            datasets.Value("float32") if self.spec.is_regression else datasets.ClassLabel(names=self.label_names)
        )
        features = datasets.Features({**{f: datasets.Value("string") for f in texts}, "label": label_feature})
        return datasets.Dataset.from_dict({**texts, "label": labels}, features=features)

    @property
    def label_names(self) -> list[str]:
        names = self.fmt.label_names or self.fmt.class_names
        return list(names) if names else [str(i) for i in range(self.spec.num_labels)]

    def compute_metrics(self, predictions, references) -> dict[str, float]:
        return compute_metrics(self.spec.metrics, predictions, references)

    def has_local_data(self, data_dir: Path | None) -> bool:
        path = self.local_path("train", data_dir)
        return path is not None and path.is_file()


def _parse_label(raw: str, fmt: GlueFormat, spec: TaskSpec) -> int | float | None:
    """A label id (or score), or None for a malformed value."""
    raw = raw.strip()
    try:
        if spec.is_regression:
            return float(raw)
        if fmt.label_names:
            return fmt.label_names.index(raw)
        value = int(raw)
    except ValueError:
        return None
    return value if 0 <= value < spec.num_labels else None


def _resolve_data_dir(data_dir: Path | None) -> Path | None:
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get("BENCH_DATA_DIR")
    return Path(env) if env else None


def _glue(spec: TaskSpec, fmt: GlueFormat) -> GlueTask:
    task = GlueTask(spec, fmt)
    register_task(spec.name, description=spec.description)(task)
    return task


NLI3 = ("entailment", "neutral", "contradiction")  # hub label order
NLI2 = ("entailment", "not_entailment")

COLA = _glue(
    TaskSpec("cola", ("sentence",), 2, ("matthews_correlation",), "GLUE CoLA: grammatical acceptability"),
    GlueFormat(
        "CoLA",
        ("sentence",),
        "label",
        has_header=False,
        # columns: source, label, original-label marker, sentence
        positions={"sentence": 3, "label": 1},
        class_names=("unacceptable", "acceptable"),
        hub_name="cola",
    ),
)
SST2 = _glue(
    TaskSpec("sst2", ("sentence",), 2, ("accuracy",), "GLUE SST-2: movie-review sentiment"),
    GlueFormat("SST-2", ("sentence",), "label", class_names=("negative", "positive"), hub_name="sst2"),
)
MRPC = _glue(
    TaskSpec("mrpc", ("sentence1", "sentence2"), 2, ("f1", "accuracy"), "GLUE MRPC: paraphrase (news)",
             symmetric_pairs=True),  # a paraphrase either way round: train on both orders (ELECTRA's code)
    GlueFormat(
        "MRPC", ("#1 String", "#2 String"), "Quality", class_names=("not_equivalent", "equivalent"), hub_name="mrpc"
    ),
)
STSB = _glue(
    TaskSpec(
        "stsb",
        ("sentence1", "sentence2"),
        1,
        ("pearson", "spearmanr"),
        "GLUE STS-B: semantic similarity (regression, 0-5)",
        finetune_overrides={"epochs": 10},
        label_scale=5.0,  # trained on score / 5 in [0, 1], evaluated on 0-5 (ELECTRA's RegressionTask)
        symmetric_pairs=True,  # similarity is symmetric: train on both orders
    ),
    GlueFormat("STS-B", ("sentence1", "sentence2"), "score", hub_name="stsb"),
)
QQP = _glue(
    TaskSpec("qqp", ("question1", "question2"), 2, ("accuracy", "f1"), "GLUE QQP: duplicate questions"),
    GlueFormat(
        "QQP", ("question1", "question2"), "is_duplicate", class_names=("not_duplicate", "duplicate"), hub_name="qqp"
    ),
)
MNLI = _glue(
    TaskSpec(
        "mnli",
        ("premise", "hypothesis"),
        3,
        ("accuracy",),
        "GLUE MNLI: entailment (dev = matched; mismatched reported too)",
        eval_splits={"dev": "", "dev_mismatched": "_mismatched"},
    ),
    GlueFormat(
        "MNLI",
        ("sentence1", "sentence2"),
        "gold_label",
        label_names=NLI3,
        split_files={"train": "train.tsv", "dev": "dev_matched.tsv", "dev_mismatched": "dev_mismatched.tsv"},
        hub_name="mnli",
        hub_splits={"train": "train", "dev": "validation_matched", "dev_mismatched": "validation_mismatched"},
    ),
)
QNLI = _glue(
    TaskSpec("qnli", ("question", "sentence"), 2, ("accuracy",), "GLUE QNLI: question answering as entailment"),
    GlueFormat("QNLI", ("question", "sentence"), "label", label_names=NLI2, hub_name="qnli"),
)
RTE = _glue(
    TaskSpec(
        "rte",
        ("sentence1", "sentence2"),
        2,
        ("accuracy",),
        "GLUE RTE: textual entailment",
        finetune_overrides={"epochs": 10},
    ),
    GlueFormat("RTE", ("sentence1", "sentence2"), "label", label_names=NLI2, hub_name="rte"),
)
WNLI = _glue(
    TaskSpec("wnli", ("sentence1", "sentence2"), 2, ("accuracy",), "GLUE WNLI: Winograd schemas as entailment"),
    GlueFormat(
        "WNLI", ("sentence1", "sentence2"), "label", class_names=("not_entailment", "entailment"), hub_name="wnli"
    ),
)

GLUE_TASKS: dict[str, GlueTask] = {t.spec.name: t for t in (COLA, SST2, MRPC, STSB, QQP, MNLI, QNLI, RTE, WNLI)}


def available_glue_tasks(data_dir: Path | None) -> list[str]:
    """Names of the GLUE tasks whose local train.tsv exists under `data_dir` (GLUE order)."""
    return [name for name, task in GLUE_TASKS.items() if task.has_local_data(data_dir)]
