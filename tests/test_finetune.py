"""The fine-tuning loop on a tiny random encoder and tiny synthetic tasks (offline, seconds)."""

from __future__ import annotations

import collections
import csv
import random
from pathlib import Path

import pytest
import torch

from bench.errors import ConfigError, DataError
from bench.train.finetune import (
    COLLAPSE_MARK,
    ClsClassifier,
    FinetuneConfig,
    LengthGroupedBatches,
    cls_cosine,
    finetune,
    is_collapsed,
    layerwise_param_groups,
    load_encoder,
)
from tasks.glue import GLUE_TASKS
from tasks.table import table_task_from_config

WORDS = "the a movie film plot actor scene story good bad long short very quite really music ending start".split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
FAST = FinetuneConfig(lr=3e-3, batch_size=16, epochs=2, max_length=32)


def save_encoder(folder: Path, kind: str = "electra") -> Path:
    """A tiny random encoder (hidden 32, 2 layers) and its WordPiece tokenizer, saved like a checkpoint."""
    from transformers import BertConfig, BertModel, BertTokenizerFast, ElectraConfig, ElectraModel

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(SPECIAL + WORDS) + "\n")
    # BertTokenizerFast(vocab_file=...) ignores the vocab in transformers 5; from_pretrained works.
    tokenizer = BertTokenizerFast.from_pretrained(folder)
    sizes = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    if kind == "electra":
        model = ElectraModel(ElectraConfig(embedding_size=16, **sizes))  # exercises embeddings_project
    else:
        model = BertModel(BertConfig(**sizes))  # has a pooler
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory) -> Path:
    return save_encoder(tmp_path_factory.mktemp("electra"))


def sentences(rng: random.Random, n: int, label_of) -> list[tuple]:
    """Random word strings; the label is a function of the words."""
    others = [w for w in WORDS if w != "good"]
    rows = []
    for _ in range(n):
        words = [rng.choice(others) for _ in range(rng.randint(3, 12))]
        for _ in range(rng.choice([0, 0, 1, 2])):
            words.insert(rng.randrange(len(words) + 1), "good")
        rows.append(label_of(words))
    return rows


def csv_task(folder: Path, header: list[str], label_of, n_train: int = 400, n_dev: int = 100, **cfg):
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    for split, n in (("train", n_train), ("dev", n_dev)):
        with (folder / f"{split}.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(sentences(rng, n, label_of))
    base = {"adapter": "csv", "train": "train.csv", "dev": "dev.csv", "text": header[0], "label": header[-1]}
    return table_task_from_config("synthetic", {**base, **cfg}, folder / "bench.toml")


@pytest.fixture(scope="module")
def good_task(tmp_path_factory):
    """label = does the token "good" occur: trivially separable."""
    return csv_task(tmp_path_factory.mktemp("good"), ["text", "label"], lambda w: (" ".join(w), int("good" in w)))


@pytest.fixture(scope="module")
def good_run(encoder_dir, good_task):
    losses: list[float] = []
    result = finetune(
        encoder_dir, good_task, FAST, seed=1, data_dir=None, progress=False, on_step=lambda s, l: losses.append(l)
    )
    return result, losses


# ---------------------------------------------------------------- pieces


def test_layerwise_learning_rates_follow_electra(encoder_dir):
    encoder, _ = load_encoder(encoder_dir)
    model = ClsClassifier(encoder, 2, 0.1)
    groups = layerwise_param_groups(model, lr=1.0, layer_decay=0.5, weight_decay=0.01)
    lr_of = {name: g["lr"] for g in groups for name in g["param_names"]}
    wd_of = {name: g["weight_decay"] for g in groups for name in g["param_names"]}
    assert set(lr_of) == {n for n, _ in model.named_parameters()}  # every parameter, once
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    # L = 2: depth d gets decay^(L + 2 - d); embeddings 0, layer i -> i + 1, head L + 2
    assert lr_of["encoder.embeddings.word_embeddings.weight"] == 0.5**4
    assert lr_of["encoder.embeddings_project.weight"] == 0.5**4
    assert lr_of["encoder.encoder.layer.0.attention.self.query.weight"] == 0.5**3
    assert lr_of["encoder.encoder.layer.1.output.dense.weight"] == 0.5**2
    assert lr_of["classifier.weight"] == lr_of["classifier.bias"] == 1.0
    assert wd_of["encoder.encoder.layer.1.output.dense.weight"] == 0.01
    assert wd_of["encoder.encoder.layer.1.output.LayerNorm.weight"] == 0.0
    assert wd_of["encoder.encoder.layer.1.output.dense.bias"] == 0.0


def test_head_is_cls_dropout_linear_without_pooler(tmp_path):
    bert = save_encoder(tmp_path / "bert", kind="bert")
    encoder, _ = load_encoder(bert, dropout=0.2)
    assert encoder.pooler is None
    assert encoder.config.hidden_dropout_prob == 0.2
    model = ClsClassifier(encoder, 3, 0.1)
    names = [n for n, _ in model.named_parameters()]
    assert not any("pooler" in n for n in names)
    assert [n for n in names if not n.startswith("encoder.")] == ["classifier.weight", "classifier.bias"]
    model.eval()
    ids = torch.tensor([[2, 5, 6, 3, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0]])
    cls = encoder(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
    torch.testing.assert_close(model(ids, mask), model.classifier(cls))


def test_schedule_warms_up_then_decays_to_zero():
    from bench.train.schedule import linear_schedule

    f = linear_schedule(warmup=10, total=100)
    assert [f(0), f(5), f(10), f(55), f(100)] == pytest.approx([0.0, 0.5 * 0.95, 0.9, 0.45, 0.0])
    assert linear_schedule(0, 10)(0) == 1.0


def test_length_grouped_batches():
    lengths = [random.Random(i).randint(3, 60) for i in range(1000)]
    grouped = LengthGroupedBatches(lengths, 32, seed=3)
    epoch = list(grouped)
    assert sorted(i for b in epoch for i in b) == list(range(1000))  # each example once per epoch
    assert epoch == list(LengthGroupedBatches(lengths, 32, seed=3))  # deterministic
    assert epoch != list(LengthGroupedBatches(lengths, 32, seed=4))
    longer = list(LengthGroupedBatches(lengths, 32, seed=3, num_batches=80))  # 2.5 epochs
    assert len(longer) == 80 and longer[:32] == epoch and longer[32:64] != epoch

    def padding(batches):
        return sum(max(lengths[i] for i in b) * len(b) for b in batches) / sum(lengths)

    random_batches = list(LengthGroupedBatches(lengths, 32, seed=3, group_by_length=False))
    assert padding(epoch) < 1.15 < 1.5 < padding(random_batches)
    ordered = list(LengthGroupedBatches(lengths, 100, shuffle=False))
    assert [lengths[b[0]] for b in ordered] == sorted(lengths[b[0]] for b in ordered)


def test_config_validation_and_task_overrides():
    with pytest.raises(ConfigError, match="lr = -1"):
        FinetuneConfig(lr=-1)
    rte = GLUE_TASKS["rte"]
    assert FinetuneConfig().for_task(rte).epochs == 10
    assert FinetuneConfig().for_task(rte, epochs=2).epochs == 2  # an explicit setting wins
    assert FinetuneConfig().for_task(GLUE_TASKS["sst2"]).epochs == 3


def test_missing_encoder_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not a local folder, and not in the hub cache"):
        load_encoder(tmp_path / "no-such-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no config.json"):
        load_encoder(tmp_path / "empty")


def test_collapse_is_judged_against_a_random_init():
    assert not is_collapsed(0.99983, reference=0.99983)  # an untrained encoder
    assert not is_collapsed(0.99923, reference=0.99983)  # healthy pretraining: more varied than init
    assert is_collapsed(0.999994, reference=0.99983)  # diverged pretraining, stuck at majority class
    assert is_collapsed(0.999981, reference=0.99983)  # diverging: 0.64 where init reaches 0.81
    assert is_collapsed(1.0, reference=0.99999)
    assert not is_collapsed(0.95, reference=0.9999)


def test_cls_cosine_detects_identical_vectors(encoder_dir):
    encoder, tok = load_encoder(encoder_dir)
    batch = tok(["the good movie", "bad plot very long", "music"], padding=True, return_tensors="pt")
    assert cls_cosine(encoder, dict(batch)) < 1.0
    same = tok(["the good movie"] * 3, return_tensors="pt")
    assert cls_cosine(encoder, dict(same)) == pytest.approx(1.0)


# ---------------------------------------------------------------- whole runs


def test_learns_a_separable_task(good_run):
    result, losses = good_run
    assert result.metrics["accuracy"] >= 0.9, result
    assert list(result.metrics) == ["accuracy", "f1"] and result.headline == "accuracy"
    assert result.steps == len(losses) == 2 * 400 // 16
    assert result.train_examples == 400
    assert sum(losses[-5:]) < sum(losses[:5])
    assert result.train_wall_s > 0 and result.eval_wall_s > 0
    assert 0.99 < result.cls_cosine <= 1  # a random init's [CLS] is nearly constant too ...
    assert result.warnings == []  # ... which is not a collapse: it fine-tunes (see bench.train.finetune)


def test_same_seed_same_result(encoder_dir, good_task, good_run):
    result, losses = good_run
    again: list[float] = []
    second = finetune(
        encoder_dir, good_task, FAST, seed=1, data_dir=None, progress=False, on_step=lambda s, l: again.append(l)
    )
    assert again == losses
    assert second.metrics == result.metrics


def test_subset_fractional_epochs_and_collapse_warning(tmp_path, good_task):
    folder = save_encoder(tmp_path / "collapsed")
    encoder, _ = load_encoder(folder)
    # Zero the last LayerNorm's gain: every position then outputs its bias, whatever the input.
    torch.nn.init.zeros_(encoder.encoder.layer[-1].output.LayerNorm.weight)
    torch.nn.init.normal_(encoder.encoder.layer[-1].output.LayerNorm.bias)
    encoder.save_pretrained(folder)
    cfg = FinetuneConfig(batch_size=8, epochs=0.5, max_train_examples=40, max_length=32)
    result = finetune(folder, good_task, cfg, seed=0, data_dir=None, progress=False)
    assert result.train_examples == 40 and result.steps == 3  # ceil(0.5 * 5 batches)
    assert result.cls_cosine == pytest.approx(1.0)
    # no pretraining.json in this folder: the warning claims neither divergence nor under-training
    assert any(COLLAPSE_MARK in w and "an under-trained encoder or a diverged pretraining" in w
               for w in result.warnings)


def test_regression(encoder_dir, tmp_path):
    task = csv_task(tmp_path, ["text", "score"], lambda w: (" ".join(w), w.count("good") + 0.5), n_train=200)
    assert task.spec.is_regression
    result = finetune(encoder_dir, task, FAST, seed=0, data_dir=None, progress=False)
    assert list(result.metrics) == ["pearson", "spearmanr"]
    assert result.metrics["pearson"] > 0.2, result  # a few dozen steps: learning, not learnt


def test_pair_task(encoder_dir, tmp_path):
    # label: does the SECOND text contain "good" (so the model must use the pair's second segment)
    task = csv_task(
        tmp_path,
        ["first", "second", "label"],
        lambda w: (" ".join(reversed(w)), " ".join(w), int("good" in w)),
        text=["first", "second"],
    )
    assert task.spec.text_fields == ("first", "second")
    result = finetune(encoder_dir, task, FAST, seed=0, data_dir=None, progress=False)
    assert result.metrics["accuracy"] >= 0.85, result


def test_mnli_reports_matched_and_mismatched(encoder_dir, tmp_path):
    rng = random.Random(0)
    labels = ["entailment", "neutral", "contradiction"]
    head = "index\tpromptID\tpairID\tgenre\tsentence1\tsentence2\tgold_label\n"

    def rows(n: int) -> str:
        out = [head]
        for i in range(n):
            k = rng.randrange(3)
            hyp = " ".join(rng.choice(WORDS[:8]) for _ in range(4)) + " " + ["good", "bad", "long"][k]
            out.append(f"{i}\t{i}\t{i}\tfiction\tthe movie\t{hyp}\t{labels[k]}\n")
        return "".join(out)

    mnli = tmp_path / "glue" / "MNLI"
    mnli.mkdir(parents=True)
    for name, n in (("train.tsv", 64), ("dev_matched.tsv", 30), ("dev_mismatched.tsv", 40)):
        (mnli / name).write_text(rows(n))
    cfg = FinetuneConfig(batch_size=16, epochs=1, max_length=32, eval_batch_size=7)
    result = finetune(encoder_dir, GLUE_TASKS["mnli"], cfg, seed=0, data_dir=tmp_path, progress=False)
    assert list(result.metrics) == ["accuracy", "accuracy_mismatched"]
    # every dev example predicted exactly once: accuracies are multiples of 1/30 and 1/40
    assert round(result.metrics["accuracy"] * 30, 6) % 1 == 0
    assert round(result.metrics["accuracy_mismatched"] * 40, 6) % 1 == 0


def test_the_loop_reads_the_loss_once_a_window_not_every_step(encoder_dir, good_task, monkeypatch):
    # A host read of the loss makes a GPU wait: one per READ_LOSS_EVERY steps, none inside a step.
    # (On the CPU a read is no dispatched op, so the reads are counted at the one function that makes them;
    # a per-step float() would show as _local_scalar_dense ops that grow with the number of steps.)
    import dataclasses
    import math

    import bench.train.finetune as F
    from test_gpu_properties import SyncOps

    reads: list[int] = []
    monkeypatch.setattr(F, "host_values", lambda t: (reads.append(len(t)), t.float().tolist())[1])
    seen = {}
    for epochs in (2, 4):  # 50 and 100 steps
        reads.clear()
        losses: list[float] = []
        with SyncOps() as ops:
            finetune(encoder_dir, good_task, dataclasses.replace(FAST, epochs=epochs), seed=1, data_dir=None,
                     progress=False, on_step=lambda s, l: losses.append(l))
        steps = 400 // 16 * epochs
        assert len(losses) == steps and all(math.isfinite(v) for v in losses)  # every step's loss, still
        assert reads == [F.READ_LOSS_EVERY] * (steps // F.READ_LOSS_EVERY)
        seen[epochs] = ops.seen
    # lift_fresh: tensors made from Python lists, which the collator does in host memory (the prepared loader
    # moves each batch once): not a wait for the device
    def waits(ops: list[str]) -> collections.Counter:
        return collections.Counter(s for s in ops if "finetune.py" in s and "lift_fresh" not in s)

    grown = waits(seen[4]) - waits(seen[2])
    assert not grown, f"ops that wait for the device, more with more steps: {dict(grown)}"
