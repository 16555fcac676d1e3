"""Token classification (NER): CoNLL reading, entity-level F1, the tagging head learning a fixed word
list, bench.toml's adapter = "conll", WNUT-17 on the shared data, and a token-task plug-in."""

from __future__ import annotations

import importlib
import json
import random
import sqlite3
import sys
from pathlib import Path

import pytest
import torch

from bench.errors import DataError
from bench.metrics.entities import entities, entity_scores
from bench.registry import MODELS, TASKS
from bench.train.finetune import FinetuneConfig, TokenClassifier, finetune, load_encoder
from tasks.conll import WNUT17, WNUT17_TAGS, read_conll
from tasks.table import table_task_from_config

FILLER = "the a movie film plot actor scene story good bad long short very quite really".split()
PEOPLE = ["john", "mary"]
PLACES = [["paris"], ["new", "york"]]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


# ---------------------------------------------------------------- entity F1, by hand

def test_entities_follow_conlleval():
    assert entities(["B-PER", "I-PER", "O", "B-LOC"]) == [("PER", 0, 1), ("LOC", 3, 3)]
    assert entities(["O", "I-PER", "I-PER"]) == [("PER", 1, 2)]  # an I- after O starts an entity
    assert entities(["B-PER", "I-LOC"]) == [("PER", 0, 0), ("LOC", 1, 1)]  # a type change ends one
    assert entities(["B-PER", "B-PER"]) == [("PER", 0, 0), ("PER", 1, 1)]


def test_entity_f1_counts_exact_span_and_type_only():
    gold = [["B-PER", "I-PER", "O", "B-LOC", "O"], ["B-ORG", "O"]]
    assert entity_scores(gold, gold) == {"entity_f1": 1.0, "entity_precision": 1.0, "entity_recall": 1.0}
    # partial overlap (PER 0-0 vs 0-1) and wrong type (ORG vs LOC) are wrong; the ORG is right; one extra
    pred = [["B-PER", "O", "O", "B-ORG", "B-LOC"], ["B-ORG", "O"]]
    scores = entity_scores(pred, gold)  # 4 predicted, 3 gold, 1 correct
    assert scores["entity_precision"] == pytest.approx(1 / 4)
    assert scores["entity_recall"] == pytest.approx(1 / 3)
    assert scores["entity_f1"] == pytest.approx(2 * (1 / 4) * (1 / 3) / (1 / 4 + 1 / 3))
    nothing = entity_scores([["O"] * 5, ["O", "O"]], gold)
    assert nothing == {"entity_f1": 0.0, "entity_precision": 0.0, "entity_recall": 0.0}
    with pytest.raises(ValueError):
        entity_scores([["O"]], [["O", "O"]])


# ---------------------------------------------------------------- reading

def test_whitespace_only_lines_break_sentences(tmp_path):
    path = tmp_path / "train.conll"
    path.write_text("John\tB-person\nruns\tO\n\t\nParis\tB-location\n \nis\tO\nnice\tO\n\n\n", encoding="utf-8")
    sentences, tags = read_conll(path)
    assert sentences == [["John", "runs"], ["Paris"], ["is", "nice"]]
    assert tags == [["B-person", "O"], ["B-location"], ["O", "O"]]


def test_conll_adapter_in_bench_toml(tmp_path):
    (tmp_path / "train.conll").write_text("john\tB-PER\nruns\tO\n\nparis\tB-LOC\n", encoding="utf-8")
    (tmp_path / "dev.conll").write_text("mary\tB-PER\n", encoding="utf-8")
    task = table_task_from_config("mine", {"adapter": "conll", "train": "train.conll", "dev": "dev.conll"},
                                  tmp_path / "bench.toml")
    assert task.spec.kind == "token" and task.spec.label_names == ("O", "B-LOC", "B-PER")
    assert task.load("dev")["tags"] == [[2]]
    (tmp_path / "dev.conll").write_text("mary\tB-MISC\n", encoding="utf-8")
    with pytest.raises(DataError, match="'B-MISC' is not among the task's tags"):
        table_task_from_config("mine", {"adapter": "conll", "train": "train.conll", "dev": "dev.conll"},
                               tmp_path / "bench.toml")


def test_wnut17_from_the_shared_data():
    import os

    root = Path(os.environ.get("BENCH_DATA_DIR", "/nonexistent"))
    if not (root / "ner" / "wnut17" / "train.conll").is_file():
        pytest.skip("BENCH_DATA_DIR with ner/wnut17 not set")
    train, dev = WNUT17.load("train", root), WNUT17.load("dev", root)
    assert (len(train), len(dev)) == (3394, 1009)  # SOURCE.md's counts: tab-only lines are breaks
    assert sum(len(t) for t in train["tokens"]) == 62730
    assert sum(t.count(WNUT17_TAGS.index("B-person")) for t in train["tags"]) == 660
    assert TASKS.get("wnut17").spec.kind == "token" and len(WNUT17_TAGS) == 13


def test_wnut17_without_data_names_both_sources(tmp_path):
    with pytest.raises(DataError) as e:
        WNUT17.load("train", tmp_path)
    assert str(tmp_path / "ner" / "wnut17" / "train.conll") in str(e.value) and "'wnut_17'" in str(e.value)


# ---------------------------------------------------------------- learning

def save_encoder(folder: Path) -> Path:
    from transformers import BertTokenizerFast, ElectraConfig, ElectraModel

    folder.mkdir(parents=True, exist_ok=True)
    words = FILLER + PEOPLE + [w for p in PLACES for w in p]
    (folder / "vocab.txt").write_text("\n".join(SPECIAL + words) + "\n")
    tokenizer = BertTokenizerFast.from_pretrained(folder)
    torch.manual_seed(0)
    model = ElectraModel(ElectraConfig(vocab_size=len(tokenizer), embedding_size=16, hidden_size=32,
                                       num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                       max_position_embeddings=64))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_tagging(folder: Path, n_train: int = 240, n_dev: int = 60) -> None:
    """Entities are a fixed word list: john/mary are persons, paris and "new york" locations."""
    rng = random.Random(0)
    for split, n in (("train", n_train), ("dev", n_dev)):
        lines = []
        for _ in range(n):
            words = [(w, "O") for w in rng.choices(FILLER, k=rng.randint(3, 8))]
            for _ in range(rng.randint(1, 2)):
                at = rng.randrange(len(words) + 1)
                if rng.random() < 0.5:
                    entity = [(rng.choice(PEOPLE), "B-PER")]
                else:
                    place = rng.choice(PLACES)
                    entity = [(w, ("B-" if i == 0 else "I-") + "LOC") for i, w in enumerate(place)]
                words[at:at] = entity
            lines += [f"{w}\t{t}" for w, t in words] + [""]
        (folder / f"{split}.conll").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_a_small_encoder_learns_a_fixed_entity_list(tmp_path):
    encoder = save_encoder(tmp_path / "encoder")
    write_tagging(tmp_path)
    task = table_task_from_config("names", {"adapter": "conll", "train": "train.conll", "dev": "dev.conll"},
                                  tmp_path / "bench.toml")
    cfg = FinetuneConfig(lr=3e-3, batch_size=16, epochs=3, max_length=32)
    result = finetune(encoder, task, cfg, seed=0, data_dir=None, progress=False)
    assert result.headline == "entity_f1"
    assert result.metrics["entity_f1"] > 0.9, result.metrics
    assert result.learning["did_not_learn"] == 0 and result.learning["trivial_score"] == 0.0


def test_the_token_head_labels_first_subtokens_only(tmp_path):
    encoder_dir = save_encoder(tmp_path / "encoder")
    encoder, tokenizer = load_encoder(encoder_dir)
    head = TokenClassifier(encoder, 3, 0.1)
    assert head.classifier.out_features == 3
    from bench.task import TaskSpec, TokenTask
    from bench.train.finetune import TokenOps

    class T(TokenTask):
        spec = TaskSpec("t", ("tokens",), 3, ("entity_f1",), kind="token", label_names=("O", "B-PER", "I-PER"))

    import datasets

    ops = TokenOps(T(), FinetuneConfig(max_length=32), tokenizer, True)
    ds = datasets.Dataset.from_dict({"tokens": [["john", "new", "york"]], "tags": [[1, 0, 0]]})
    (example,) = ops.encode(ds, train=True, split="train")
    pieces = tokenizer.convert_ids_to_tokens(example["input_ids"])
    assert pieces == ["[CLS]", "john", "new", "york", "[SEP]"]
    assert example["labels"][0] == -100 and example["labels"][-1] == -100
    assert example["labels"][1:4] == [1, 0, 0] and ops.first["train"] == [[1, 2, 3]]


# ---------------------------------------------------------------- a third-party token task

TAG_PLUGIN = '''
"""A plug-in tagging task: in-memory sentences of corpus words; "sigma" and "tau" are entities."""

import random

import datasets

from bench.task import TaskSpec, TokenTask

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
NAMES = ("O", "B-X", "I-X")


class SigmaTags(TokenTask):
    def __init__(self):
        self.spec = TaskSpec(name="sigmatags", text_fields=("tokens",), num_labels=3,
                             metrics=("entity_f1", "entity_precision", "entity_recall"), kind="token",
                             label_names=NAMES, description="demo plug-in tagging task: sigma tau is an entity")

    def load(self, split, data_dir=None):
        rng = random.Random(split)
        rows = {"tokens": [], "tags": []}
        for _ in range({"train": 96, "dev": 24}[split]):
            words = [rng.choice(WORDS) for _ in range(4)]
            tags = [0] * 4
            at = rng.randrange(4)
            words[at:at] = ["sigma", "tau"]
            tags[at:at] = [1, 2]
            rows["tokens"].append(words)
            rows["tags"].append(tags)
        return datasets.Dataset.from_dict(rows)


TAGS = SigmaTags()
'''


def test_a_token_task_plugin_runs_through_the_entry_point(tmp_path, micro_project, monkeypatch):
    from click.testing import CliRunner

    from bench.cli import main

    site = tmp_path / "site"
    site.mkdir()
    (site / "benchplug_tags.py").write_text(TAG_PLUGIN)
    info = site / "tagplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tagplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[bench.tasks]\nsigmatags = benchplug_tags:TAGS\n")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    for registry in (MODELS, TASKS):
        monkeypatch.setattr(registry, "_plugins", {})
        monkeypatch.setattr(registry, "_discovered", False)
    monkeypatch.chdir(micro_project)
    try:
        result = CliRunner().invoke(main, ["run", "--quiet", "--models", "electra", "--control", "none", "--task",
                                           "sigmatags", "--seeds", "1", "--epochs", "3", "--budget", "2e9"],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert TASKS.source("sigmatags") == "plug-in tagplug 0.1"
    finally:
        sys.modules.pop("benchplug_tags", None)
    db = sqlite3.connect(micro_project / "results" / "bench.db")
    rows = db.execute("SELECT spec, status FROM runs WHERE kind = 'finetune'").fetchall()
    assert len(rows) == 1 and rows[0][1] == "done"
    assert json.loads(rows[0][0])["task"] == "sigmatags"
    names = {r[0] for r in db.execute("SELECT name FROM metrics")}
    assert {"score", "metric_entity_f1", "metric_entity_precision", "metric_entity_recall"} <= names
