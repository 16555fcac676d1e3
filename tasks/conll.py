"""Token classification (NER) on BIO-tagged CoNLL column files, and the WNUT-17 task.

A CoNLL file holds one token per line, the token in the first column and its tag in the last
(tab- or space-separated), and a blank line between sentences. Any whitespace-only line is a
sentence break: WNUT-17's train file separates 2,394 of its 3,394 sentences by a line holding a
single tab. Lines starting with `-DOCSTART-` (CoNLL-2003) are skipped.

`wnut17` reads `<data_dir>/ner/wnut17/{train,dev,test}.conll` (the official WNUT-17 files, see its
SOURCE.md) and falls back to the hub dataset `wnut_17`; dev is its evaluation split. A user's own
tagging data needs no code, a table in bench.toml:

    [tasks.mytags]
    adapter = "conll"
    train = "data/tags/train.conll"    # relative to the config file's folder
    dev = "data/tags/dev.conll"
    description = "..."                # optional

Tag ids follow the sorted tag set of the train file ("O" first); a dev tag the train file lacks is an error.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import datasets

from bench.errors import ConfigError, DataError
from bench.fingerprint import file_sha256
from bench.metrics.entities import ENTITY_METRICS
from bench.registry import register_task
from bench.task import TaskSpec, TokenTask


def read_conll(path: Path) -> tuple[list[list[str]], list[list[str]]]:
    """(sentences of tokens, sentences of tags) from a CoNLL column file."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e})") from e
    sentences: list[list[str]] = []
    tags: list[list[str]] = []
    words: list[str] = []
    labels: list[str] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():  # blank or whitespace-only (WNUT-17's tab lines): a sentence break
            if words:
                sentences.append(words)
                tags.append(labels)
                words, labels = [], []
            continue
        if line.startswith("-DOCSTART-"):
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        fields = [f for f in fields if f.strip()]
        if len(fields) < 2:
            raise DataError(f"{path}, line {line_no}: expected a token and a tag, found {line!r}")
        words.append(fields[0].strip())
        labels.append(fields[-1].strip())
    if words:
        sentences.append(words)
        tags.append(labels)
    if not sentences:
        raise DataError(f"{path}: no sentences")
    return sentences, tags


def _check_tags(path: Path, tags: list[list[str]], names: tuple[str, ...]) -> list[list[int]]:
    index = {n: i for i, n in enumerate(names)}
    out = []
    for sentence in tags:
        try:
            out.append([index[t] for t in sentence])
        except KeyError as e:
            raise DataError(f"{path}: tag {e.args[0]!r} is not among the task's tags ({', '.join(names)})") from None
    return out


def _features(names: tuple[str, ...]) -> datasets.Features:
    return datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                              "tags": datasets.Sequence(datasets.ClassLabel(names=list(names)))})


def tag_dataset(path: Path, names: tuple[str, ...]) -> datasets.Dataset:
    sentences, tags = read_conll(path)
    return datasets.Dataset.from_dict({"tokens": sentences, "tags": _check_tags(path, tags, names)},
                                      features=_features(names))


class ConllTask(TokenTask):
    """A tagging task over CoNLL files: a local folder first, then (optionally) the hub."""

    def __init__(self, spec: TaskSpec, *, folder: str = "", files: dict[str, Path] | None = None,
                 hub_id: str = "", hub_tag_column: str = "ner_tags") -> None:
        self.spec = spec
        self.description = spec.description
        self.folder = folder  # under the data folder (e.g. "ner/wnut17"), for built-in tasks
        self.files = dict(files or {})  # split -> file, for bench.toml tasks
        self.hub_id = hub_id
        self.hub_tag_column = hub_tag_column

    def __repr__(self) -> str:
        return f"ConllTask({self.spec.name!r})"

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", *self.spec.eval_splits)

    def local_path(self, split: str, data_dir: Path | None) -> Path | None:
        if split in self.files:
            return self.files[split]
        root = data_dir if data_dir is not None else os.environ.get("BENCH_DATA_DIR")
        return Path(root) / self.folder / f"{split}.conll" if root and self.folder else None

    def load(self, split: str, data_dir: Path | None = None) -> datasets.Dataset:
        if split not in self.splits:
            raise DataError(f"task {self.spec.name!r} has no split {split!r}; splits: {', '.join(self.splits)}")
        path = self.local_path(split, data_dir)
        if path is not None and path.is_file():
            return tag_dataset(path, self.spec.label_names)
        tried = str(path) if path is not None else "(no data folder: BENCH_DATA_DIR is not set)"
        if not self.hub_id:
            raise DataError(f"task {self.spec.name!r} {split}: no file at {tried}")
        hub_split = "validation" if split == "dev" else split
        try:
            ds = datasets.load_dataset(self.hub_id, split=hub_split)
            names = tuple(ds.features[self.hub_tag_column].feature.names)
            if names != self.spec.label_names:
                raise DataError(f"the hub's tags {names} differ from the task's {self.spec.label_names}")
            ds = ds.select_columns(["tokens", self.hub_tag_column]).rename_column(self.hub_tag_column, "tags")
            return ds.cast(_features(self.spec.label_names))
        except Exception as e:  # noqa: BLE001 - any hub failure becomes the same clear message
            raise DataError(
                f"task {self.spec.name!r} {split}: no local file at {tried}, and the hub dataset {self.hub_id!r} "
                f"(split {hub_split!r}) could not be loaded ({type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}). Fix: set BENCH_DATA_DIR or --data to a folder holding "
                f"{self.folder or 'the files'}/train.conll and dev.conll, or allow hub access."
            ) from e

    def fingerprint(self, data_dir: Path | None, cache_dir: Path | None = None) -> str:
        digest = hashlib.sha256(json.dumps(list(self.spec.label_names)).encode())
        for split in self.splits:
            path = self.local_path(split, data_dir)
            source = (f"file\0{file_sha256(path, cache_dir)}" if path is not None and path.is_file()
                      else f"hub\0{self.hub_id}\0{split}")
            digest.update(f"{split}\0{source}\n".encode())
        return digest.hexdigest()[:16]


# The hub's wnut_17 tag order, so a run reads the same ids from either source.
WNUT17_TAGS = ("O", "B-corporation", "I-corporation", "B-creative-work", "I-creative-work", "B-group", "I-group",
               "B-location", "I-location", "B-person", "I-person", "B-product", "I-product")

WNUT17 = ConllTask(
    TaskSpec("wnut17", ("tokens",), len(WNUT17_TAGS), ENTITY_METRICS,
             "WNUT-17 emerging entities: NER, entity-level F1 on dev (CC BY 4.0)", kind="token",
             label_names=WNUT17_TAGS),
    folder="ner/wnut17", hub_id="wnut_17",
)
register_task("wnut17", description=WNUT17.spec.description)(WNUT17)

CONLL_KEYS = ("adapter", "train", "dev", "description")


def conll_task_from_config(name: str, cfg: dict, config_file: Path) -> ConllTask:
    """The task `[tasks.<name>]` with adapter = "conll" of `config_file` (ConfigError / DataError)."""
    where = f"[tasks.{name}] in {config_file}"
    unknown = sorted(set(cfg) - set(CONLL_KEYS))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(unknown)} in {where}; an adapter = \"conll\" task takes: "
                          f"{', '.join(CONLL_KEYS)}")
    missing = [k for k in ("train", "dev") if k not in cfg]
    if missing:
        raise ConfigError(f"missing key(s) {', '.join(missing)} in {where}; required: train, dev")
    description = cfg.get("description", f"{name}: user tagging data (conll)")
    if not isinstance(description, str):
        raise ConfigError(f"description in {where} must be a string")
    base = Path(config_file).parent
    paths: dict[str, Path] = {}
    for split in ("train", "dev"):
        value = cfg[split]
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{split} = {value!r} in {where}: give a file path")
        path = Path(value).expanduser()
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            raise DataError(f"{split} file {path} (key {split!r} of {where}) does not exist")
        paths[split] = path
    _, train_tags = read_conll(paths["train"])
    found = {t for sentence in train_tags for t in sentence}
    names = tuple(["O"] * ("O" in found) + sorted(found - {"O"}))
    if len(names) < 2:
        raise DataError(f"{paths['train']}: a single tag ({names[0]!r}); a tagging task needs at least two")
    task = ConllTask(TaskSpec(name, ("tokens",), len(names), ENTITY_METRICS, description, kind="token",
                              label_names=names), files=paths)
    task.load("dev")  # every dev tag must be a train tag: fail now, not after pretraining
    return task
