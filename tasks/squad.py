"""Extractive QA on SQuAD v1.1 and v2.0 (official JSON), and the offline `squad-devsplit`.

`squad` (v1.1) reads `train-v1.1.json` and `dev-v1.1.json` from `<data_dir>/qa/squad-v1.1/`
(plain or `.gz`), `squad_v2` reads `train-v2.0.json` and `dev-v2.0.json` from `<data_dir>/qa/squad-v2.0/`;
each falls back to the hub dataset of the same name (`squad`, `squad_v2`), else a DataError naming both.
`squad-devsplit` reads `<data_dir>/qa/squad-v1.1-devsplit/{train,dev}.json(.gz)`: the official
v1.1 *dev* set split by article (38 articles to train, 10 to evaluate), for offline and CPU-scale
runs. Its scores are not SQuAD dev scores.

Rows: `id`, `title`, `question`, `context`, `answers` (`{"text": [...], "answer_start": [...]}`, the
hub's layout); a SQuAD 2.0 question marked `is_impossible` has empty answer lists. Training uses the
first answer, evaluation all of them (as the official scripts do).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from pathlib import Path

import datasets

from bench.errors import DataError
from bench.fingerprint import file_sha256
from bench.metrics.squad import SPAN_METRICS, SPAN_METRICS_V2
from bench.registry import register_task
from bench.task import SpanTask, TaskSpec

# google-research/electra configure_finetuning.py: for "squad" tasks max_seq_length = 512 and
# num_train_epochs = 2 (the rest of its QA settings live in bench.train.qa).
SQUAD_OVERRIDES = {"max_length": 512, "epochs": 2}

FEATURES = datasets.Features({
    "id": datasets.Value("string"), "title": datasets.Value("string"), "question": datasets.Value("string"),
    "context": datasets.Value("string"),
    "answers": {"text": datasets.Sequence(datasets.Value("string")),
                "answer_start": datasets.Sequence(datasets.Value("int32"))},
})


def read_squad(path: Path) -> datasets.Dataset:
    """One official SQuAD JSON file (`.json` or `.json.gz`) as rows."""
    try:
        opener = gzip.open if str(path).endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
            data = json.load(f)["data"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not a SQuAD JSON file ({type(e).__name__}: {e})") from e
    rows: dict[str, list] = {k: [] for k in FEATURES}
    for article in data:
        for paragraph in article["paragraphs"]:
            context = paragraph["context"]
            for qa in paragraph["qas"]:
                answers = [] if qa.get("is_impossible") else qa.get("answers", [])
                rows["id"].append(str(qa["id"]))
                rows["title"].append(article.get("title", ""))
                rows["question"].append(qa["question"])
                rows["context"].append(context)
                rows["answers"].append({"text": [a["text"] for a in answers],
                                        "answer_start": [int(a["answer_start"]) for a in answers]})
    if not rows["id"]:
        raise DataError(f"{path}: no questions")
    return datasets.Dataset.from_dict(rows, features=FEATURES)


class SquadTask(SpanTask):
    """A SQuAD-format task: official JSON files in a local folder first, then the hub."""

    def __init__(self, spec: TaskSpec, *, folder: str, files: dict[str, str], hub_id: str = "") -> None:
        self.spec = spec
        self.description = spec.description
        self.folder = folder  # under the data folder
        self.files = files  # split -> file name (without .gz)
        self.hub_id = hub_id

    def __repr__(self) -> str:
        return f"SquadTask({self.spec.name!r})"

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", *self.spec.eval_splits)

    def local_path(self, split: str, data_dir: Path | None) -> Path | None:
        """The split's file (plain, else .gz) under the data folder; the plain name when neither exists."""
        root = data_dir if data_dir is not None else os.environ.get("BENCH_DATA_DIR")
        if not root:
            return None
        plain = Path(root) / self.folder / self.files[split]
        zipped = plain.with_name(plain.name + ".gz")
        return zipped if not plain.is_file() and zipped.is_file() else plain

    def load(self, split: str, data_dir: Path | None = None) -> datasets.Dataset:
        if split not in self.splits:
            raise DataError(f"task {self.spec.name!r} has no split {split!r}; splits: {', '.join(self.splits)}")
        path = self.local_path(split, data_dir)
        if path is not None and path.is_file():
            return read_squad(path)
        tried = f"{path} (or .gz)" if path is not None else "(no data folder: BENCH_DATA_DIR is not set)"
        hub_split = "validation" if split == "dev" else split
        if not self.hub_id:
            raise DataError(f"task {self.spec.name!r} {split}: no file at {tried}. Fix: set BENCH_DATA_DIR or --data "
                            f"to a folder holding {self.folder}/{self.files['train']} and {self.files['dev']}.")
        try:
            ds = datasets.load_dataset(self.hub_id, split=hub_split)
            return ds.select_columns(list(FEATURES)).cast(FEATURES)
        except Exception as e:  # noqa: BLE001 - any hub failure becomes the same clear message
            raise DataError(
                f"task {self.spec.name!r} {split}: no local file at {tried}, and the hub dataset {self.hub_id!r} "
                f"(split {hub_split!r}) could not be loaded ({type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}). Fix: set BENCH_DATA_DIR or --data to a folder holding "
                f"{self.folder}/{self.files['train']} and {self.files['dev']} (the official files), or allow hub access."
            ) from e

    def fingerprint(self, data_dir: Path | None, cache_dir: Path | None = None) -> str:
        digest = hashlib.sha256()
        for split in self.splits:
            path = self.local_path(split, data_dir)
            source = (f"file\0{file_sha256(path, cache_dir)}" if path is not None and path.is_file()
                      else f"hub\0{self.hub_id}\0{split}")
            digest.update(f"{split}\0{source}\n".encode())
        return digest.hexdigest()[:16]


def _squad(spec: TaskSpec, **kwargs) -> SquadTask:
    task = SquadTask(spec, **kwargs)
    register_task(spec.name, description=spec.description)(task)
    return task


SQUAD = _squad(
    TaskSpec("squad", ("question", "context"), 0, SPAN_METRICS,
             "SQuAD v1.1: extractive QA, F1 and exact match on the official dev set", kind="span",
             finetune_overrides=dict(SQUAD_OVERRIDES)),
    folder="qa/squad-v1.1", files={"train": "train-v1.1.json", "dev": "dev-v1.1.json"}, hub_id="squad",
)
SQUAD_V2 = _squad(
    TaskSpec("squad_v2", ("question", "context"), 0, SPAN_METRICS_V2,
             "SQuAD v2.0: extractive QA with unanswerable questions, F1 and exact match on the official dev set",
             kind="span", no_answer=True, finetune_overrides=dict(SQUAD_OVERRIDES)),
    folder="qa/squad-v2.0", files={"train": "train-v2.0.json", "dev": "dev-v2.0.json"}, hub_id="squad_v2",
)
SQUAD_DEVSPLIT = _squad(
    TaskSpec("squad-devsplit", ("question", "context"), 0, SPAN_METRICS,
             "SQuAD v1.1 dev split by article (38 articles train, 10 evaluate), for offline/CPU runs: "
             "not SQuAD dev scores", kind="span", finetune_overrides=dict(SQUAD_OVERRIDES)),
    folder="qa/squad-v1.1-devsplit", files={"train": "train.json", "dev": "dev.json"},
)
