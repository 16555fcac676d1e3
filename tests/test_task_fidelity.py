"""Fine-tuning details of the ELECTRA authors' code (google-research/electra,
finetune/classification/classification_tasks.py), applied to every model alike: STS-B trained on
score / 5 and evaluated on 0-5, MRPC and STS-B training pairs in both orders. And the collapse
warning, which says "diverged" only when the checkpoint's pretraining record says so.

Offline and tiny: hand-made GLUE-layout TSVs in tmp_path, a 2-layer random encoder.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_finetune import WORDS, save_encoder

import bench.train.finetune as ft
from bench.errors import ConfigError
from bench.metrics import compute_metrics
from bench.results.store import Metric
from bench.task import TaskSpec
from bench.train.finetune import (
    COLLAPSE_MARK,
    FinetuneConfig,
    collapse_warning,
    finetune,
    load_encoder,
    pretraining_diverged,
    read_pretraining_record,
    training_set,
)
from bench.train.pretrain import (
    PRETRAINING_RECORD,
    RECORD_POINTS,
    OptimSettings,
    atomic_save,
    plan_pretraining,
    pretrain,
    pretraining_record,
)
from tasks.glue import GLUE_TASKS

STSB = GLUE_TASKS["stsb"]
MRPC = GLUE_TASKS["mrpc"]
STSB_HEAD = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
MRPC_HEAD = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
# Train and dev scores differ, so a training target can be told from a dev reference.
TRAIN_SCORES = [0.0, 1.25, 2.5, 3.75, 5.0, 4.0, 0.5, 2.0]
DEV_SCORES = [4.8, 0.2, 3.3, 1.6, 2.9, 0.7]
FAST = FinetuneConfig(lr=1e-3, batch_size=4, epochs=1, max_length=16, eval_batch_size=4)
COSINE, REFERENCE = 0.999990, 0.999800  # a collapsed probe and its random-init reference


def sentence(i: int, salt: int) -> str:
    return " ".join(WORDS[(i * 7 + salt + k) % len(WORDS)] for k in range(3 + i % 4))


def write_stsb(root: Path) -> Path:
    """GLUE's STS-B layout (10 columns, score last) with TRAIN_SCORES and DEV_SCORES."""
    folder = root / "glue" / "STS-B"
    folder.mkdir(parents=True, exist_ok=True)
    for split, scores in (("train", TRAIN_SCORES), ("dev", DEV_SCORES)):
        rows = [f"{i}\tmain-captions\tMSRvid\t2012test\t{i:04d}\tnone\tnone\t{sentence(i, 0)}\t{sentence(i, 5)}"
                f"\t{s:.3f}\n" for i, s in enumerate(scores)]
        (folder / f"{split}.tsv").write_text(STSB_HEAD + "".join(rows), encoding="utf-8")
    return root


def write_mrpc(root: Path, n_train: int = 10, n_dev: int = 6) -> Path:
    """GLUE's MRPC layout (BOM, Quality first) with distinct sentences in every row."""
    folder = root / "glue" / "MRPC"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, salt in (("train", n_train, 0), ("dev", n_dev, 100)):
        rows = [f"{i % 2}\t{1000 + i}\t{2000 + i}\t{sentence(i, salt)} {i}\t{sentence(i, salt + 3)} {i}\n"
                for i in range(n)]
        (folder / f"{split}.tsv").write_bytes(b"\xef\xbb\xbf" + (MRPC_HEAD + "".join(rows)).encode("utf-8"))
    return root


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_encoder(tmp_path_factory.mktemp("encoder"))


def record_of(first: float, low: float, last: float, *, points: int = 6, steps: int = 50,
              nonfinite: bool = False) -> dict[str, Any]:
    """A pretraining record as bench.train.pretrain writes it (only the fields fine-tuning reads)."""
    return {"format": 1, "steps": steps, "planned_steps": steps, "loss_points": points, "nonfinite": nonfinite,
            "loss": {"first": first, "first_step": 1, "min": low, "min_step": 20, "last": last, "last_step": steps}}


# ---------------------------------------------------------------- task specs


def test_glue_specs_carry_the_electra_details():
    assert STSB.spec.label_scale == 5.0 and STSB.spec.symmetric_pairs
    assert MRPC.spec.label_scale == 1.0 and MRPC.spec.symmetric_pairs
    for name in ("cola", "sst2", "qqp", "mnli", "qnli", "rte", "wnli"):  # the ELECTRA code doubles only MRPC, STS-B
        spec = GLUE_TASKS[name].spec
        assert (spec.label_scale, spec.symmetric_pairs) == (1.0, False), name
    with pytest.raises(ConfigError, match="label_scale applies to regression tasks only"):
        TaskSpec("x", ("a",), 2, ("accuracy",), label_scale=5.0)
    with pytest.raises(ConfigError, match="label_scale = 0.0 must be a finite number > 0"):
        TaskSpec("x", ("a",), 1, ("pearson",), label_scale=0.0)
    with pytest.raises(ConfigError, match="symmetric_pairs needs two text fields, not 1"):
        TaskSpec("x", ("a",), 2, ("accuracy",), symmetric_pairs=True)


# ---------------------------------------------------------------- STS-B: trained on [0, 1], reported on 0-5


def test_stsb_training_set_holds_scores_over_5(tmp_path: Path):
    write_stsb(tmp_path)
    ds = training_set(STSB, tmp_path, FinetuneConfig(), seed=0)
    assert len(ds) == 2 * len(TRAIN_SCORES)  # symmetric: both orders
    assert ds.features["label"].dtype == "float32"
    assert ds["label"][:] == pytest.approx([s / 5 for s in TRAIN_SCORES] * 2)
    assert min(ds["label"][:]) == 0.0 and max(ds["label"][:]) == 1.0
    assert STSB.load("dev", tmp_path)["label"][:] == pytest.approx(DEV_SCORES)  # dev keeps the 0-5 scale


def test_stsb_finetune_trains_on_0_1_and_reports_metrics_on_0_5(encoder_dir: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch):
    write_stsb(tmp_path)
    targets: list[float] = []
    raw: list[np.ndarray] = []
    seen: list[tuple[np.ndarray, np.ndarray]] = []

    class SpyF:  # torch.nn.functional, recording the targets the regression loss trains towards
        def __getattr__(self, name: str) -> Any:
            return getattr(torch.nn.functional, name)

        def mse_loss(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            targets.extend(target.tolist())
            return torch.nn.functional.mse_loss(input, target)

    real_predict, real_metrics = ft._predict, STSB.compute_metrics

    def spy_predict(*args: Any) -> tuple[np.ndarray, np.ndarray]:
        predictions, references = real_predict(*args)
        raw.append(predictions.copy())
        return predictions, references

    def spy_metrics(predictions: Any, references: Any) -> dict[str, float]:
        seen.append((np.asarray(predictions), np.asarray(references)))
        return real_metrics(predictions, references)

    monkeypatch.setattr(ft, "F", SpyF())
    monkeypatch.setattr(ft, "_predict", spy_predict)
    monkeypatch.setattr(STSB, "compute_metrics", spy_metrics)
    result = finetune(encoder_dir, STSB, FAST, seed=0, data_dir=tmp_path, progress=False)

    assert result.train_examples == 2 * len(TRAIN_SCORES)
    assert len(targets) == result.steps * FAST.batch_size  # 16 rows, 4 full batches: every target recorded
    assert sorted(set(np.round(targets, 6))) == sorted({round(s / 5, 6) for s in TRAIN_SCORES})  # score / 5
    (predictions, references), = seen
    assert sorted(references.tolist()) == pytest.approx(sorted(DEV_SCORES))  # dev references: 0-5, untouched
    np.testing.assert_array_equal(predictions, raw[0] * 5)  # the model's [0, 1] outputs, back on 0-5
    assert result.metrics == compute_metrics(STSB.spec.metrics, raw[0] * 5, references)


# ---------------------------------------------------------------- MRPC / STS-B: both orders of every pair


def assert_both_orders(ds: Any, original: Any) -> None:
    a, b, labels = ds["sentence1"][:], ds["sentence2"][:], ds["label"][:]
    n = len(original)
    assert len(ds) == 2 * n
    assert (a[:n], b[:n], labels[:n]) == (original["sentence1"][:], original["sentence2"][:], original["label"][:])
    assert (a[n:], b[n:], labels[n:]) == (b[:n], a[:n], labels[:n])  # the same rows, texts swapped
    assert Counter(zip(a, b, labels)) == Counter(zip(b, a, labels))


def test_mrpc_training_set_has_every_pair_in_both_orders(tmp_path: Path):
    write_mrpc(tmp_path)
    train = MRPC.load("train", tmp_path)
    ds = training_set(MRPC, tmp_path, FinetuneConfig(), seed=0)
    assert_both_orders(ds, train)
    assert ds.features == train.features  # class labels and their names kept
    # subsampled first, then doubled: the kept pairs, each in both orders
    small = training_set(MRPC, tmp_path, FinetuneConfig(max_train_examples=4), seed=3)
    kept = train.select([train["sentence1"][:].index(s) for s in small["sentence1"][:4]])
    assert_both_orders(small, kept)
    assert len(MRPC.load("dev", tmp_path)) == 6  # eval splits are never doubled


def test_real_mrpc_train_split_is_doubled(shared_data: Path):
    if not (shared_data / "glue" / "MRPC" / "train.tsv").is_file():
        pytest.skip(f"no glue/MRPC/train.tsv under {shared_data}")
    train = MRPC.load("train", shared_data)
    assert_both_orders(training_set(MRPC, shared_data, FinetuneConfig(), seed=0), train)


# ---------------------------------------------------------------- the collapse warning's diagnosis


@pytest.mark.parametrize(("record", "verdict"), [
    (record_of(10.4, 7.2, 7.2), False),  # falling
    (record_of(10.4, 7.0, 7.3), False),  # last within 10% of the drop above its minimum: still falling
    (record_of(10.4, 7.0, 7.4), True),  # 0.4 above the minimum after a 3.4 drop: diverged
    (record_of(10.4, 10.4, 10.6), True),  # never fell, then rose by 2%: diverged
    (record_of(10.4, 10.4, 10.4, nonfinite=True), True),
    (record_of(4.178, 4.158, 4.177), None),  # flat within 1% (noise): neither
    (record_of(10.4, 10.4, 10.4, points=1), None),  # one logged loss: no trend
])
def test_divergence_rule(record: dict[str, Any], verdict: bool | None):
    assert pretraining_diverged(record) is verdict


def test_collapse_warning_wording():
    numbers = ("0.999990", "0.999800")
    falling = collapse_warning(COSINE, REFERENCE, record_of(10.4, 7.2, 7.2, steps=50))
    assert falling.startswith("encoder under-trained: " + COLLAPSE_MARK)
    assert "still falling (10.4 -> 7.2 over 50 steps); a larger budget trains it further" in falling
    assert "diverged" not in falling

    rose = collapse_warning(COSINE, REFERENCE, record_of(10.4, 6.0, 9.0))
    assert rose.startswith(f"encoder collapsed: {COLLAPSE_MARK}; pretraining diverged: its loss went from 10.4 "
                           f"down to 6 (step 20) and back up to 9 (step 50)")
    nonfinite = collapse_warning(COSINE, REFERENCE, record_of(10.4, 6.0, 6.0, nonfinite=True))
    assert "pretraining diverged: its logged loss became non-finite" in nonfinite
    for text in (rose, nonfinite):
        assert "under-trained" not in text and "learning rate too high?" in text

    for neutral, why in ((collapse_warning(COSINE, REFERENCE, None), f"no {PRETRAINING_RECORD} beside the checkpoint"),
                         (collapse_warning(COSINE, REFERENCE, record_of(4.178, 4.158, 4.177)), "neither falling")):
        assert neutral.startswith(f"encoder collapsed: {COLLAPSE_MARK}") and why in neutral
        assert "pretraining diverged:" not in neutral and "encoder under-trained" not in neutral
        assert "(an under-trained encoder or a diverged pretraining; " in neutral  # claims neither
    for text in (falling, rose, nonfinite, neutral):
        assert all(n in text for n in numbers), text


def test_read_pretraining_record(tmp_path: Path):
    record = record_of(10.4, 7.2, 7.2)
    (tmp_path / PRETRAINING_RECORD).write_text(json.dumps(record))
    assert read_pretraining_record(tmp_path) == record
    assert read_pretraining_record(str(tmp_path)) == record
    assert read_pretraining_record(tmp_path / "no-such-folder") is None  # scratch control, path: encoders
    assert read_pretraining_record("google/electra-small-discriminator") is None  # an hf: hub id
    (tmp_path / PRETRAINING_RECORD).write_text("{not json")
    assert read_pretraining_record(tmp_path) is None  # damaged: only the diagnosis is lost


def test_pretraining_record_and_its_file(tmp_path: Path):
    series = [Metric("loss", 10.0 - 0.005 * s, step=s) for s in [1, *range(10, 1001, 10)]]
    series += [Metric("lr", 1e-3, step=10), Metric("mlm_loss", 99.0, step=10)]  # other metrics are not the loss
    plan = type("Plan", (), {"steps": 2000, "time_budget_s": None})()
    record = pretraining_record(series, 1000, plan)
    assert record["steps"] == 1000 and record["planned_steps"] == 2000 and record["loss_points"] == 101
    assert record["loss"] == {"first": 9.995, "first_step": 1, "min": 5.0, "min_step": 1000, "last": 5.0,
                              "last_step": 1000}
    kept = record["loss_series"]
    assert len(kept) == RECORD_POINTS and kept[0] == [1, 9.995] and kept[-1] == [1000, 5.0]
    assert record["nonfinite"] is False
    assert pretraining_record(series + [Metric("loss", float("nan"), step=1010)], 1010, plan)["nonfinite"] is True

    class Stub(torch.nn.Module):
        def encoder(self) -> torch.nn.Module:
            return self

    def save(encoder: torch.nn.Module, folder: Path) -> None:
        (folder / "config.json").write_text("{}")

    with_record = atomic_save(Stub(), tmp_path / "ckpt-1", save, record=record)
    assert json.loads((with_record / PRETRAINING_RECORD).read_text()) == record
    without = atomic_save(Stub(), tmp_path / "ckpt-0", save)  # the scratch control: nothing pretrained
    assert (without / "config.json").is_file() and not (without / PRETRAINING_RECORD).exists()


def test_pretraining_loop_writes_a_record_beside_each_checkpoint(tmp_path: Path):
    from bench.backend import TokenInfo
    from models.bert import BertBackend
    from models.sizes import SizePreset

    size = SizePreset(name="record-test", description="test-only", hidden=32, layers=2, heads=2, ffn=64,
                      embedding=32, gen_hidden=16, gen_heads=1, gen_ffn=32, vocab_size=64, dropout=0.0)
    tok = TokenInfo(vocab_size=64, pad_id=0, unk_id=1, cls_id=2, sep_id=3, mask_id=4)
    torch.manual_seed(0)
    backend = BertBackend(size, tok, seq_len=16)
    per_step = backend.flops_per_step(4, 16, "paper").total
    plan = plan_pretraining(backend, budget_flops=12 * per_step, convention="paper", batch_size=4, seq_len=16,
                            warmup_fraction=0.1, checkpoint_fractions=(0.5,))
    blocks = torch.randint(5, 64, (32, 16), generator=torch.Generator().manual_seed(0))
    blocks[:, 0], blocks[:, -1] = tok.cls_id, tok.sep_id
    result = pretrain(backend, blocks, plan, OptimSettings(lr=1e-3), pad_id=0, out_dir=tmp_path,
                      save=lambda m, d: None, progress=False, resume=None, log_every=5)
    for fraction, steps in ((0.5, 6), (1.0, 12)):
        record = json.loads((result.checkpoints[fraction] / PRETRAINING_RECORD).read_text())
        assert record["steps"] == steps and record["planned_steps"] == 12
        assert record["loss"]["first_step"] == 1 and record["loss"]["last_step"] == (5 if steps == 6 else 12)
        assert record["loss"]["first"] == next(m.value for m in result.series if m.name == "loss")  # step 1


def test_mrpc_finetune_doubles_train_keeps_dev_and_reads_the_pretraining_record(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch):
    """One run for three things (each fine-tuning run costs seconds): doubled train, dev as is, and
    the collapse warning of a collapsed encoder whose pretraining.json shows a falling loss."""
    folder = save_encoder(tmp_path / "collapsed")
    encoder, _ = load_encoder(folder)
    # Zero the last LayerNorm's gain: every position then outputs its bias, whatever the input.
    torch.nn.init.zeros_(encoder.encoder.layer[-1].output.LayerNorm.weight)
    torch.nn.init.normal_(encoder.encoder.layer[-1].output.LayerNorm.bias)
    encoder.save_pretrained(folder)
    (folder / PRETRAINING_RECORD).write_text(json.dumps(record_of(10.4, 7.2, 7.2, steps=50)))
    write_mrpc(tmp_path)
    lengths: list[int] = []
    real_metrics = MRPC.compute_metrics
    monkeypatch.setattr(MRPC, "compute_metrics", lambda p, r: lengths.append(len(r)) or real_metrics(p, r))
    result = finetune(folder, MRPC, FAST, seed=0, data_dir=tmp_path, progress=False)
    assert result.train_examples == 20 and result.steps == 5  # 10 rows in both orders, batches of 4
    assert lengths == [6]  # dev: its 6 rows, once each
    warning, = [w for w in result.warnings if COLLAPSE_MARK in w]
    assert warning.startswith("encoder under-trained:") and "(10.4 -> 7.2 over 50 steps)" in warning
