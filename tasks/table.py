"""Tasks on the user's own data, declared as a `[tasks.<name>]` table in bench.toml.

    [tasks.urgency]
    adapter = "csv"                      # csv, tsv or jsonl
    train = "data/urgency/train.csv"     # relative to the config file's folder
    dev = "data/urgency/dev.csv"
    text = "query"                       # or ["sentence1", "sentence2"] for pairs
    label = "urgency"                    # strings or ints: classes; floats: regression
    metrics = ["accuracy", "f1_macro"]   # optional

`adapter = "conll"` declares a tagging (NER) task over CoNLL column files instead: keys adapter,
train, dev and optionally description (tasks.conll).

Both files are read and checked when the task is built, so a typo in a label fails before
hours of pretraining rather than after. Nothing here registers at import: the config reader
calls `table_task_from_config` and adds the result to the registry.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from bench.errors import ConfigError, DataError
from bench.fingerprint import file_sha256
from bench.metrics import CLASSIFICATION_METRICS, KNOWN_METRICS, REGRESSION_METRICS, compute_metrics
from bench.task import Task, TaskSpec

ADAPTERS = ("csv", "tsv", "jsonl", "conll")  # conll: tagging data (tasks.conll)
REQUIRED_KEYS = ("adapter", "train", "dev", "text", "label")
OPTIONAL_KEYS = ("metrics", "description")
VALID_KEYS = REQUIRED_KEYS + OPTIONAL_KEYS


@dataclass
class Rows:
    """One parsed file: text columns, raw label values and the line each row starts on."""

    path: Path
    texts: dict[str, list[str]]
    labels: list[Any]
    lines: list[int]


class TableTask(Task):
    """A classification or regression task over the user's CSV, TSV or JSONL files."""

    def __init__(
        self,
        spec: TaskSpec,
        label_names: list[str],
        splits: dict[str, datasets.Dataset],
        files: dict[str, Path] | None = None,
        reading: dict[str, Any] | None = None,
    ) -> None:
        self.spec = spec
        self.label_names = label_names  # class index -> original label ([] for regression)
        self.description = spec.description
        self._splits = splits
        self.files = dict(files or {})  # split -> the file it was read from
        self.reading = dict(reading or {})  # adapter and columns: with the files, they decide the rows

    def __repr__(self) -> str:
        return f"TableTask({self.spec.name!r})"

    def load(self, split: str, data_dir: Path | None = None) -> datasets.Dataset:
        # data_dir is unused: the files were named in bench.toml and read when it was.
        if split not in self._splits:
            raise DataError(f"task {self.spec.name!r} has no split {split!r}; splits: {', '.join(self._splits)}")
        return self._splits[split]

    def fingerprint(self, data_dir: Path | None = None, cache_dir: Path | None = None) -> str:
        """Hash of the train/dev files' bytes (sha256, cached in `cache_dir`) and of how they are
        read (adapter, text and label columns); without files, the default hash of the rows."""
        if set(self.files) != set(self._splits):
            return super().fingerprint(data_dir, cache_dir)
        digest = hashlib.sha256(json.dumps(self.reading, sort_keys=True).encode())
        for split in sorted(self.files):
            digest.update(f"{split}\0{file_sha256(self.files[split], cache_dir)}\n".encode())
        return digest.hexdigest()[:16]

    def compute_metrics(self, predictions, references) -> dict[str, float]:
        return compute_metrics(self.spec.metrics, predictions, references)


def table_task_from_config(name: str, cfg: dict, config_file: Path) -> Task:
    """Build and check the task `[tasks.<name>]` of `config_file` (ConfigError / DataError)."""
    where = f"[tasks.{name}] in {config_file}"
    if cfg.get("adapter") == "conll":  # token classification: its own keys (tasks.conll)
        from tasks.conll import conll_task_from_config

        return conll_task_from_config(name, cfg, config_file)

    unknown = sorted(set(cfg) - set(VALID_KEYS))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(unknown)} in {where}; valid keys: {', '.join(VALID_KEYS)}")
    missing = [k for k in REQUIRED_KEYS if k not in cfg]
    if missing:
        raise ConfigError(f"missing key(s) {', '.join(missing)} in {where}; required: {', '.join(REQUIRED_KEYS)}")

    adapter = cfg["adapter"]
    if adapter not in ADAPTERS:
        raise ConfigError(f"adapter = {adapter!r} in {where} is not known; use one of: {', '.join(ADAPTERS)}")
    text = cfg["text"]
    text_fields = (text,) if isinstance(text, str) else tuple(text) if isinstance(text, list) else ()
    if not 1 <= len(text_fields) <= 2 or not all(isinstance(t, str) and t for t in text_fields):
        raise ConfigError(f"text = {text!r} in {where}: give one column name or a list of two (a pair)")
    label = cfg["label"]
    if not isinstance(label, str) or not label:
        raise ConfigError(f"label = {label!r} in {where}: give the name of the label column")
    if label in text_fields:
        raise ConfigError(f"label = {label!r} in {where} is also a text column")
    metrics = cfg.get("metrics")
    if metrics is not None:
        if isinstance(metrics, str):
            metrics = [metrics]
        if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) for m in metrics):
            raise ConfigError(f"metrics = {metrics!r} in {where}: give a non-empty list of metric names")
        bad = [m for m in metrics if m not in KNOWN_METRICS]
        if bad:
            raise ConfigError(
                f"unknown metric(s) {', '.join(bad)} in metrics of {where}; known metrics: {', '.join(KNOWN_METRICS)}"
            )
    description = cfg.get("description", f"{name}: user data ({adapter})")
    if not isinstance(description, str):
        raise ConfigError(f"description in {where} must be a string")

    base = Path(config_file).parent
    paths = {}
    for split in ("train", "dev"):
        value = cfg[split]
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{split} = {value!r} in {where}: give a file path")
        path = Path(value).expanduser()
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            raise DataError(f"{split} file {path} (key {split!r} of {where}) does not exist")
        paths[split] = path

    columns = (*text_fields, label)
    train = _read(paths["train"], adapter, columns, where)
    dev = _read(paths["dev"], adapter, columns, where)

    regression, label_values = _label_space(train, label)
    if regression:
        train_labels = [float(v) for v in train.labels]
        dev_labels = [_dev_float(v, dev, i) for i, v in enumerate(dev.labels)]
        label_names: list[str] = []
        num_labels = 1
    else:
        index = {v: i for i, v in enumerate(label_values)}
        train_labels = [index[_class_key(v, label_values)] for v in train.labels]
        dev_labels = [_dev_class(v, dev, i, index, label_values, train.path) for i, v in enumerate(dev.labels)]
        label_names = [str(v) for v in label_values]
        num_labels = len(label_values)

    if metrics is None:
        metrics = ["pearson", "spearmanr"] if regression else ["accuracy", "f1" if num_labels == 2 else "f1_macro"]
    _check_metrics_fit(metrics, regression, num_labels, where)

    spec = TaskSpec(
        name=name,
        text_fields=text_fields,
        num_labels=num_labels,
        metrics=tuple(metrics),
        description=description,
    )
    label_feature = datasets.Value("float32") if regression else datasets.ClassLabel(names=label_names)
    features = datasets.Features({**{f: datasets.Value("string") for f in text_fields}, "label": label_feature})
    splits = {
        "train": datasets.Dataset.from_dict({**train.texts, "label": train_labels}, features=features),
        "dev": datasets.Dataset.from_dict({**dev.texts, "label": dev_labels}, features=features),
    }
    reading = {"adapter": adapter, "text": list(text_fields), "label": label}
    return TableTask(spec, label_names, splits, files=paths, reading=reading)


def _read(path: Path, adapter: str, columns: tuple[str, ...], where: str) -> Rows:
    rows = _read_jsonl(path, columns) if adapter == "jsonl" else _read_delimited(path, adapter, columns)
    if not rows.labels:
        raise DataError(f"{path} (from {where}) has no data rows")
    return rows


def _read_delimited(path: Path, adapter: str, columns: tuple[str, ...]) -> Rows:
    # Standard CSV quoting for both (what pandas, Excel and csv.writer produce).
    delimiter = "\t" if adapter == "tsv" else ","
    rows = Rows(path, {c: [] for c in columns[:-1]}, [], [])
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        try:
            header = next(reader, None)
            if header is None:
                return rows
            missing = [c for c in columns if c not in header]
            if missing:
                raise DataError(
                    f"{path}: no column {', '.join(repr(c) for c in missing)}; "
                    f"the {adapter} header has columns: {', '.join(header)}"
                )
            index = {c: header.index(c) for c in columns}
            line = reader.line_num + 1
            for row in reader:
                if row:  # blank lines are not rows
                    if len(row) != len(header):
                        raise DataError(
                            f"{path}, line {line}: unparseable row: {len(row)} fields where the header has "
                            f"{len(header)} (an unquoted {'tab' if adapter == 'tsv' else 'comma'} or quote?)"
                        )
                    for c in columns[:-1]:
                        rows.texts[c].append(row[index[c]])
                    rows.labels.append(row[index[columns[-1]]].strip())
                    rows.lines.append(line)
                line = reader.line_num + 1
        except csv.Error as e:
            raise DataError(f"{path}, line {reader.line_num}: unparseable row ({e})") from e
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not UTF-8 text ({e})") from e
    return rows


def _read_jsonl(path: Path, columns: tuple[str, ...]) -> Rows:
    rows = Rows(path, {c: [] for c in columns[:-1]}, [], [])
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e})") from e
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}, line {line_no}: unparseable row (invalid JSON: {e.msg})") from e
        if not isinstance(obj, dict):
            raise DataError(f"{path}, line {line_no}: unparseable row (expected a JSON object, got {type(obj).__name__})")
        missing = [c for c in columns if c not in obj]
        if missing:
            raise DataError(
                f"{path}, line {line_no}: no column {', '.join(repr(c) for c in missing)}; "
                f"this row has columns: {', '.join(obj)}"
            )
        for c in columns[:-1]:
            if not isinstance(obj[c], str):
                raise DataError(f"{path}, line {line_no}: unparseable row ({c!r} is {obj[c]!r}, not a string)")
            rows.texts[c].append(obj[c])
        value = obj[columns[-1]]
        if isinstance(value, bool) or not isinstance(value, (str, int, float)) or value == "":
            raise DataError(f"{path}, line {line_no}: unparseable row (label {value!r} is not a string or number)")
        rows.labels.append(value)
        rows.lines.append(line_no)
    return rows


def _label_space(train: Rows, label: str) -> tuple[bool, list[Any]]:
    """(is_regression, sorted class values). Ints -> classes; any non-integer float -> regression."""
    values = train.labels
    for i, v in enumerate(values):
        if v == "":
            raise DataError(f"{train.path}, line {train.lines[i]}: unparseable row (empty label {label!r})")
    if all(_as_int(v) is not None for v in values):
        classes: list[Any] = sorted({_as_int(v) for v in values})
    elif all(_as_float(v) is not None for v in values):
        return True, []
    elif all(isinstance(v, str) for v in values):
        # A column of real numbers with a stray word is a broken row, not 2000 classes.
        floats = [i for i, v in enumerate(values) if _as_int(v) is None and _as_float(v) is not None]
        words = [i for i, v in enumerate(values) if _as_float(v) is None]
        if floats and words:
            i = words[0]
            raise DataError(
                f"{train.path}, line {train.lines[i]}: unparseable row (label {values[i]!r} in a column of "
                f"numbers such as {values[floats[0]]!r})"
            )
        classes = sorted(set(values))
    else:
        i = next(i for i, v in enumerate(values) if not isinstance(v, str))
        raise DataError(
            f"{train.path}, line {train.lines[i]}: label {values[i]!r} is a number but other labels are strings"
        )
    if len(classes) < 2:
        raise DataError(f"{train.path}: label column {label!r} has a single value ({classes[0]!r}); need at least 2")
    return False, classes


def _as_int(v: Any) -> int | None:
    if isinstance(v, float):
        return None  # a float column (JSON 1.0) is regression, as "1.0" is in a CSV
    try:
        return int(v)
    except ValueError:
        return None


def _as_float(v: Any) -> float | None:
    try:
        value = float(v)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _class_key(v: Any, label_values: list[Any]) -> Any:
    return _as_int(v) if isinstance(label_values[0], int) else v


def _dev_class(v: Any, dev: Rows, i: int, index: dict[Any, int], label_values: list[Any], train_path: Path) -> int:
    key = _class_key(v, label_values)
    if key is None or key not in index:
        shown = ", ".join(repr(x) for x in label_values[:20])
        raise DataError(
            f"{dev.path}, line {dev.lines[i]}: label {v!r} does not occur in the train file {train_path} "
            f"(train labels: {shown})"
        )
    return index[key]


def _dev_float(v: Any, dev: Rows, i: int) -> float:
    value = _as_float(v)
    if value is None or isinstance(v, bool):
        raise DataError(f"{dev.path}, line {dev.lines[i]}: unparseable row (label {v!r} is not a number)")
    return value


def _check_metrics_fit(metrics: list[str], regression: bool, num_labels: int, where: str) -> None:
    if regression:
        wrong = [m for m in metrics if m in CLASSIFICATION_METRICS]
        if wrong:
            raise ConfigError(
                f"metrics {', '.join(wrong)} in {where} need classes, but the label column holds real numbers "
                f"(a regression task); use: {', '.join(sorted(REGRESSION_METRICS))}"
            )
        return
    wrong = [m for m in metrics if m in REGRESSION_METRICS]
    if wrong:
        raise ConfigError(
            f"metrics {', '.join(wrong)} in {where} are for regression, but the labels are classes; "
            f"use: {', '.join(sorted(CLASSIFICATION_METRICS))}"
        )
    if "f1" in metrics and num_labels != 2:
        raise ConfigError(f"metric f1 in {where} is binary F1, but there are {num_labels} classes; use f1_macro")
