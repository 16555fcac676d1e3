"""Pretraining backends: masking, sampling, tying, losses that learn, checkpoints that load."""

from __future__ import annotations

import math

import pytest
import torch

from bench.backend import Backend, TokenInfo
from bench.registry import MODELS
import bench.objectives as C
from models.bert import BertBackend
from models.electra import ElectraBackend
from models.scratch import ScratchBackend
from models.sizes import SizePreset

VOCAB = 200
TOK = TokenInfo(vocab_size=VOCAB, pad_id=0, unk_id=1, cls_id=2, sep_id=3, mask_id=4)
SIZE = SizePreset(
    name="test", description="unit-test size", hidden=32, layers=2, heads=2, ffn=64, embedding=32,
    gen_hidden=16, gen_heads=1, gen_ffn=32, vocab_size=VOCAB, max_position=64,
)
SEQ = 32


@pytest.fixture(autouse=True)
def one_thread():
    # tiny models on a shared 2-core machine: 2 intra-op threads under contention are ~100x slower
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(n)


def make_batch(b: int = 8, seq: int = SEQ, vocab: int = VOCAB, pad_rows: int = 2) -> dict[str, torch.Tensor]:
    """[CLS] tokens [SEP] [PAD]...: some rows padded, real ids never special."""
    ids = torch.randint(5, vocab, (b, seq))
    am = torch.ones(b, seq, dtype=torch.long)
    ids[:, 0] = TOK.cls_id
    for r in range(b):
        length = seq - (r * 5 if r < pad_rows else 0)
        ids[r, length - 1] = TOK.sep_id
        ids[r, length:] = TOK.pad_id
        am[r, length:] = 0
    return {"input_ids": ids, "attention_mask": am}


# --------------------------------------------------------------------------- masking helpers


def test_n_predictions_fixed_count():
    assert C.n_predictions(128, 0.15) == 19
    assert C.n_predictions(32, 0.15) == 5
    assert C.n_predictions(4, 0.01) == 1
    assert C.n_predictions(10, 0.99) == 10


def test_mask_positions_exact_count_never_special():
    batch = make_batch(16, pad_rows=4)
    ids, am = batch["input_ids"], batch["attention_mask"]
    ids[3, 5:9] = TOK.unk_id  # [UNK] is special too
    n = C.n_predictions(SEQ, 0.15)
    for _ in range(20):
        pos, w = C.sample_mask_positions(ids, am, TOK.special_ids, n)
        assert pos.shape == w.shape == (16, n)
        assert all(len(set(row.tolist())) == n for row in pos)  # distinct per row
        chosen = ids.gather(1, pos)[w > 0]
        assert not torch.isin(chosen, torch.tensor(TOK.special_ids)).any()
        assert am.gather(1, pos)[w > 0].all()
        assert (w.sum(1) == n).all()  # every row has >= n candidates here


def test_mask_positions_short_row_gets_zero_weights():
    ids = torch.tensor([[2, 10, 11, 3, 0, 0, 0, 0]])
    am = (ids != 0).long()
    pos, w = C.sample_mask_positions(ids, am, TOK.special_ids, 4)
    assert pos.shape == (1, 4) and w.sum() == 2
    assert sorted(pos[w > 0].tolist()) == [1, 2]


def test_electra_corruption_85_15():
    ids = torch.randint(5, VOCAB, (400, 64))
    am = torch.ones_like(ids)
    pos, w = C.sample_mask_positions(ids, am, TOK.special_ids, 10)
    out = C.corrupt(ids, pos, w, TOK, mask_frac=0.85, random_frac=0.0)
    new, old = out.gather(1, pos), ids.gather(1, pos)
    n = new.numel()
    assert abs((new == TOK.mask_id).sum().item() / n - 0.85) < 0.02
    assert abs((new == old).sum().item() / n - 0.15) < 0.02
    assert ((new == TOK.mask_id) | (new == old)).all()
    untouched = torch.ones_like(ids, dtype=torch.bool).scatter(1, pos, False)
    assert (out[untouched] == ids[untouched]).all()


def test_bert_corruption_80_10_10():
    tok = TokenInfo(vocab_size=5000, pad_id=0, unk_id=100, cls_id=101, sep_id=102, mask_id=103)
    ids = torch.randint(200, 5000, (400, 64))
    am = torch.ones_like(ids)
    pos, w = C.sample_mask_positions(ids, am, tok.special_ids, 10)
    out = C.corrupt(ids, pos, w, tok, mask_frac=0.8, random_frac=0.1)
    new, old = out.gather(1, pos), ids.gather(1, pos)
    n = new.numel()
    is_mask = new == tok.mask_id
    is_random = ~is_mask & (new != old)
    assert abs(is_mask.sum().item() / n - 0.80) < 0.02
    assert abs(is_random.sum().item() / n - 0.10) < 0.015
    assert abs((new == old).sum().item() / n - 0.10) < 0.015
    assert not torch.isin(new[is_random], torch.tensor(tok.special_ids)).any()


def test_zero_weight_slots_are_never_corrupted():
    ids = torch.tensor([[2, 10, 3, 0, 0, 0]])
    pos, w = C.sample_mask_positions(ids, (ids != 0).long(), TOK.special_ids, 4)
    for _ in range(20):
        assert torch.equal(C.corrupt(ids, pos, w * 0, TOK, mask_frac=0.8, random_frac=0.1), ids)


def test_gumbel_sample_follows_softmax():
    logits = torch.log(torch.tensor([0.7, 0.2, 0.1])).expand(20000, 3)
    counts = torch.bincount(C.gumbel_sample(logits), minlength=3).float() / 20000
    assert torch.allclose(counts, torch.tensor([0.7, 0.2, 0.1]), atol=0.02)
    peaked = torch.tensor([[0.0, 50.0, 0.0]])
    assert C.gumbel_sample(peaked).item() == 1
    assert C.gumbel_sample(torch.tensor([[1.0, 1.2]]), temperature=1e-4).item() == 1  # cold = argmax
    assert not C.gumbel_sample(logits.clone().requires_grad_()).requires_grad


def test_replaced_labels():
    ids = torch.tensor([[2, 10, 11, 12, 13, 3]])
    pos = torch.tensor([[1, 2, 4]])
    w = torch.tensor([[1.0, 1.0, 0.0]])
    sampled = torch.tensor([10, 50, 60])  # equal to original; different; weight-0 slot
    disc_input, labels = C.replace_and_label(ids, pos, w, sampled)
    assert disc_input.tolist() == [[2, 10, 50, 12, 13, 3]]
    assert labels.tolist() == [[0, 0, 1, 0, 0, 0]]  # sampled == original -> real


def test_binary_entropy():
    assert C.binary_entropy(0.5) == pytest.approx(math.log(2))
    assert C.binary_entropy(0.0) == 0.0 == C.binary_entropy(1.0)
    assert C.binary_entropy(0.15) == pytest.approx(0.4227, abs=1e-4)


# --------------------------------------------------------------------------- backends


def test_registry_and_options():
    assert {"electra", "bert", "scratch"} <= set(MODELS.names())
    for name in ("electra", "bert", "scratch"):
        cls = MODELS.get(name)
        assert issubclass(cls, Backend) and cls.name == name and cls.description
    assert ScratchBackend.pretrains is False and ElectraBackend.pretrains and BertBackend.pretrains
    with pytest.raises(TypeError, match="gen_hiden"):
        ElectraBackend(SIZE, TOK, gen_hiden=8)
    with pytest.raises(TypeError, match="disc_weight"):
        BertBackend(SIZE, TOK, disc_weight=1.0)
    with pytest.raises(ValueError):
        BertBackend(SIZE, TOK, mask_prob=1.5)
    m = ElectraBackend(SIZE, TOK, gen_hidden=8, disc_weight=10.0, temperature=0.5)
    assert m.generator.config.hidden_size == 8 and m.disc_weight == 10.0


def test_electra_tying_and_unique_parameters():
    m = ElectraBackend(SIZE, TOK, seq_len=SEQ)
    word = m.discriminator.embeddings.word_embeddings.weight
    assert m.generator.embeddings is m.discriminator.embeddings  # word, position, type, LayerNorm
    assert m.generator.embeddings.word_embeddings.weight.data_ptr() == word.data_ptr()
    assert m.gen_head.decoder.weight.data_ptr() == word.data_ptr()
    assert m.generator.embeddings.position_embeddings.weight.data_ptr() == m.discriminator.embeddings.position_embeddings.weight.data_ptr()
    assert m.generator.config.embedding_size == m.discriminator.config.embedding_size
    assert hasattr(m.generator, "embeddings_project")  # 32 -> 16
    unique = {p.data_ptr() for _, p in m.named_parameters(remove_duplicate=False)}
    with_dups = len(list(m.named_parameters(remove_duplicate=False)))
    assert len(list(m.parameters())) == len(unique) < with_dups  # the optimiser sees each tensor once


def test_bert_tying():
    m = BertBackend(SIZE, TOK, seq_len=SEQ)
    assert m.mlm_head.decoder.weight.data_ptr() == m.encoder_model.embeddings.word_embeddings.weight.data_ptr()
    unique = {p.data_ptr() for _, p in m.named_parameters(remove_duplicate=False)}
    assert len(list(m.parameters())) == len(unique)


@pytest.mark.parametrize("cls", [ElectraBackend, BertBackend])
def test_heads_run_on_gathered_rows_only(cls):
    m = cls(SIZE, TOK, seq_len=SEQ)
    head = m.gen_head if cls is ElectraBackend else m.mlm_head
    shapes = []
    head.register_forward_hook(lambda mod, inp, out: shapes.append(tuple(out.shape)))
    m.loss(make_batch(8))
    assert shapes == [(8 * C.n_predictions(SEQ, 0.15), VOCAB)]


def test_electra_loss_and_metrics():
    m = ElectraBackend(SIZE, TOK, seq_len=SEQ)
    out = m.loss(make_batch(8))
    metrics = floats(out.metrics)
    for k in ("loss", "gen_loss", "gen_acc", "disc_loss", "disc_acc", "replaced_frac", "disc_base_entropy"):
        assert math.isfinite(metrics[k]), k
    assert metrics["loss"] == pytest.approx(metrics["gen_loss"] + 50 * metrics["disc_loss"], rel=1e-5)
    assert metrics["disc_base_entropy"] == pytest.approx(C.binary_entropy(metrics["replaced_frac"]), rel=1e-5)
    out.loss.backward()
    assert all(p.grad is not None for p in m.parameters())  # no unused parameters (DDP-friendly)
    assert set(m(make_batch(2)).metrics) == set(out.metrics)  # forward = loss, for DDP wrappers


def test_electra_sample_equal_to_original_is_real(monkeypatch):
    import models.electra as E

    m = ElectraBackend(SIZE, TOK, seq_len=SEQ)
    captured = {}

    def perfect_generator(logits, temperature=1.0, rng=None):  # replay the originals: nothing is replaced
        return captured["targets"]

    orig_mlm_loss = E.mlm_loss

    def spy(logits, targets, weights):
        captured["targets"] = targets.reshape(-1)
        return orig_mlm_loss(logits, targets, weights)

    monkeypatch.setattr(E, "mlm_loss", spy)
    monkeypatch.setattr(E, "gumbel_sample", perfect_generator)
    out = floats(m.loss(make_batch(8)).metrics)
    assert out["replaced_frac"] == 0.0 and out["disc_base_entropy"] == 0.0


def test_bert_loss_and_metrics():
    out = floats(BertBackend(SIZE, TOK, seq_len=SEQ).loss(make_batch(8)).metrics)
    assert set(out) >= {"loss", "mlm_loss", "mlm_acc"}
    assert out["mlm_loss"] == pytest.approx(math.log(VOCAB), rel=0.1)  # untrained: ~uniform


def floats(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()}


@pytest.mark.parametrize("cls", [ElectraBackend, BertBackend])
def test_metrics_stay_on_the_device(cls):
    # the loop reads metrics once per logging window: a backend hands back detached 0-dim tensors,
    # never Python floats (each float would wait for the device on every step)
    out = cls(SIZE, TOK, seq_len=SEQ).loss(make_batch(4))
    for k, v in out.metrics.items():
        assert isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad, k


def test_binary_entropy_of_a_tensor_matches_the_float():
    for p in (0.0, 0.15, 0.5, 1.0):
        assert float(C.binary_entropy(torch.tensor(p))) == pytest.approx(C.binary_entropy(p), abs=1e-6)


def test_scratch_is_a_control():
    m = ScratchBackend(SIZE, TOK, seq_len=SEQ)
    with pytest.raises(RuntimeError, match="never pretrained"):
        m.loss(make_batch(2))
    assert m.flops_per_step(32, 128, "paper").total == 0 == m.flops_per_step(32, 128, "executed").total
    ref = ElectraBackend(SIZE, TOK)
    for conv in ("paper", "executed"):
        assert m.inference_flops(128, conv).total == ref.inference_flops(128, conv).total > 0


# --------------------------------------------------------------------------- learning


def structured_corpus(n_patterns: int = 4, seq: int = SEQ, vocab: int = 64, seed: int = 1):
    """A few fixed token patterns, repeated: trivially learnable structure."""
    g = torch.Generator().manual_seed(seed)
    patterns = torch.randint(5, vocab, (n_patterns, seq - 2), generator=g)

    def batch(b: int = 16) -> dict[str, torch.Tensor]:
        rows = patterns[torch.randint(0, n_patterns, (b,))]
        ids = torch.cat([torch.full((b, 1), TOK.cls_id), rows, torch.full((b, 1), TOK.sep_id)], 1)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    return batch


def train(m: Backend, batch, steps: int, lr: float = 1e-3) -> list[dict[str, float]]:
    opt = torch.optim.AdamW(m.parameters(), lr=lr, eps=1e-6, weight_decay=0.01)
    hist = []
    for _ in range(steps):
        out = m.loss(batch())
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        hist.append(floats(out.metrics))
    return hist


def mean(hist: list[dict[str, float]], key: str) -> float:
    return sum(h[key] for h in hist) / len(hist)


def test_bert_learns_structured_corpus():
    tok = TokenInfo(vocab_size=64, pad_id=0, unk_id=1, cls_id=2, sep_id=3, mask_id=4)
    m = BertBackend(SIZE, tok, seq_len=SEQ)
    hist = train(m, structured_corpus(), 150, lr=2e-3)
    assert mean(hist[-20:], "mlm_loss") < 0.6 * mean(hist[:5], "mlm_loss")
    assert mean(hist[-20:], "mlm_acc") > 0.4


def test_electra_discriminator_beats_base_rate():
    # NOTES: judge the discriminator against the binary entropy of the replaced fraction
    tok = TokenInfo(vocab_size=64, pad_id=0, unk_id=1, cls_id=2, sep_id=3, mask_id=4)
    m = ElectraBackend(SIZE, tok, seq_len=SEQ)
    hist = train(m, structured_corpus(), 200, lr=1e-3)
    last = hist[-20:]
    assert mean(last, "gen_loss") < 0.85 * mean(hist[:5], "gen_loss")
    assert mean(last, "disc_loss") < 0.6 * mean(last, "disc_base_entropy")
    assert mean(last, "replaced_frac") > 0.05  # the task did not vanish


# --------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("cls", [ElectraBackend, BertBackend, ScratchBackend])
def test_encoder_saves_and_loads_offline(cls, tmp_path, monkeypatch):
    from transformers import AutoModel, AutoModelForSequenceClassification

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    m = cls(SIZE, TOK, seq_len=SEQ)
    enc = m.encoder()
    enc.save_pretrained(tmp_path)
    clf = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=2)
    base = AutoModel.from_pretrained(tmp_path)
    ref = enc.embeddings.word_embeddings.weight
    assert torch.equal(base.embeddings.word_embeddings.weight, ref)
    assert torch.equal(clf.base_model.embeddings.word_embeddings.weight, ref)
    assert base.config.hidden_size == SIZE.hidden and base.config.embedding_size == SIZE.embedding
    batch = make_batch(2)
    enc.eval()
    base.eval()
    with torch.no_grad():
        a = enc(**batch).last_hidden_state
        b = base(**batch).last_hidden_state
    assert torch.allclose(a, b, atol=1e-5)
    assert clf(**batch).logits.shape == (2, 2)


def test_mask_count_is_fifteen_percent_of_each_rows_own_tokens():
    """A padded row gets 15% of ITS tokens masked, not the full row's slot count."""
    ids = torch.randint(10, 200, (3, 128))
    am = torch.ones_like(ids)
    am[1, 42:] = 0  # 40 candidates after [CLS]/[SEP]
    am[2, 6:] = 0  # 4 candidates: at least one is still masked
    ids[:, 0], ids[:, -1] = TOK.cls_id, TOK.sep_id
    ids[1, 41], ids[2, 5] = TOK.sep_id, TOK.sep_id
    ids = ids.masked_fill(am == 0, TOK.pad_id)
    ids[:, -1] = torch.where(am[:, -1] > 0, TOK.sep_id, TOK.pad_id)
    n = C.n_predictions(128, 0.15)
    pos, w = C.sample_mask_positions(ids, am, TOK.special_ids, n, mask_prob=0.15)
    assert pos.shape == (3, n)
    assert w.sum(1).tolist() == [19.0, 6.0, 1.0]  # round(.15*126)=19, round(.15*40)=6, max(1, round(.6))
    assert am.gather(1, pos)[w > 0].all()


def test_row_random_draws_do_not_depend_on_the_split():
    """Two halves drawn by two 'processes' equal the whole batch drawn by one."""
    def rng(offset, rows):
        return C.RowRandom(torch.Generator().manual_seed(7), offset=offset, rows=rows, total=8)

    whole = make_batch(8)
    halves = [{k: v[o:o + 4] for k, v in whole.items()} for o in (0, 4)]
    n_pred = C.n_predictions(SEQ, 0.15)
    full = C.sample_mask_positions(whole["input_ids"], whole["attention_mask"], TOK.special_ids, n_pred,
                                   mask_prob=0.15, rng=rng(0, 8))
    parts = [C.sample_mask_positions(h["input_ids"], h["attention_mask"], TOK.special_ids, n_pred, mask_prob=0.15,
                                     rng=rng(o, 4)) for h, o in zip(halves, (0, 4))]
    assert torch.equal(torch.cat([p[0] for p in parts]), full[0]) and torch.equal(torch.cat([p[1] for p in parts]), full[1])
    logits = torch.randn(8 * n_pred, 50)
    sample = C.gumbel_sample(logits, rng=rng(0, 8))
    split = [C.gumbel_sample(logits[o * n_pred:(o + 4) * n_pred], rng=rng(o, 4)) for o in (0, 4)]
    assert torch.equal(torch.cat(split), sample)
