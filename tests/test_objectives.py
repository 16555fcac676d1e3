"""The ELECTRA paper's objective variants (section 3.2), GDES, and the new options: each test pins
the one idea its backend adds, on hand-made batches and tiny networks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import ElectraModel

import bench.objectives as C
from bench.backend import Backend, TokenInfo
from bench.registry import MODELS
from models.all_tokens_mlm import AllTokensMLMBackend, copy_mixture_log_prob
from models.bert import BertBackend
from models.electra import ElectraBackend
from models.electra_15 import Electra15Backend
from models.electra_gdes import ElectraGDESBackend
from models.replace_mlm import ReplaceMLMBackend
from models.sizes import SIZES, SizePreset

VOCAB = 200
TOK = TokenInfo(vocab_size=VOCAB, pad_id=0, unk_id=1, cls_id=2, sep_id=3, mask_id=4)
# embedding 16 != hidden 32: the embedding projection (and its FLOPs) is exercised too
SIZE = SizePreset(
    name="test", description="unit-test size", hidden=32, layers=2, heads=2, ffn=64, embedding=16,
    gen_hidden=16, gen_heads=1, gen_ffn=32, vocab_size=VOCAB, max_position=64,
)
SEQ = 32
NEW = (Electra15Backend, ReplaceMLMBackend, AllTokensMLMBackend, ElectraGDESBackend)
PRETRAINING = [n for n in MODELS.names() if MODELS.get(n).pretrains]


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # shared 2-core machine
    torch.manual_seed(0)
    yield
    torch.set_num_threads(n)


def make_batch(b: int = 8, seq: int = SEQ, pad_rows: int = 2) -> dict[str, torch.Tensor]:
    """[CLS] tokens [SEP] [PAD]...: the first `pad_rows` rows padded, real ids never special."""
    ids = torch.randint(5, VOCAB, (b, seq))
    am = torch.ones(b, seq, dtype=torch.long)
    ids[:, 0] = TOK.cls_id
    for r in range(min(b, pad_rows)):
        length = seq - 5 * (r + 1)
        ids[r, length - 1], ids[r, length:], am[r, length:] = TOK.sep_id, TOK.pad_id, 0
    ids[pad_rows:, -1] = TOK.sep_id
    return {"input_ids": ids, "attention_mask": am}


def with_rng(batch: dict, seed: int = 7) -> dict:
    """The same draws on every call (masking, corruption, samples)."""
    b = batch["input_ids"].size(0)
    return {**batch, "rng": C.RowRandom(torch.Generator().manual_seed(seed), offset=0, rows=b, total=b)}


def capture_output(module: torch.nn.Module, store: list) -> None:
    module.register_forward_hook(lambda mod, inp, out: store.append(out))


def capture_input_ids(module: torch.nn.Module, store: list) -> None:
    module.register_forward_pre_hook(lambda mod, args, kwargs: store.append(kwargs.get("input_ids")), with_kwargs=True)


def capture_corruption(m: ElectraBackend, store: list) -> None:
    """Wrap the generator half of the step (instance attribute: only this model)."""
    original = m.corrupt_with_generator

    def spy(*args):
        store.append(original(*args))
        return store[-1]

    m.corrupt_with_generator = spy


# --------------------------------------------------------------------------- electra-15


def test_electra_15_scores_only_the_masked_positions():
    m = Electra15Backend(SIZE, TOK, seq_len=SEQ).eval()  # eval: no dropout, two runs are the same
    batch = make_batch()
    logits, corruptions = [], []
    capture_output(m.disc_head, logits)
    capture_corruption(m, corruptions)
    out = m.loss(with_rng(batch))
    c, z = corruptions[0], logits[0]
    scored = torch.zeros(batch["input_ids"].shape).scatter(1, c.positions, c.weights).bool()
    assert 0 < scored.sum() < batch["attention_mask"].sum() / 4  # ~15% of the real tokens
    expected = F.binary_cross_entropy_with_logits(z[scored], c.labels[scored]).detach()
    assert float(out.metrics["disc_loss"]) == pytest.approx(float(expected), rel=1e-6)
    assert float(out.loss.detach()) == pytest.approx(float(c.gen_loss.detach() + 50 * expected), rel=1e-6)

    # logits at the unscored positions pushed far off: electra-15's loss does not move, electra's does
    def perturb(model: ElectraBackend) -> tuple[float, float]:
        plain = float(model.loss(with_rng(batch)).metrics["disc_loss"])
        handle = model.disc_head.register_forward_hook(lambda mod, inp, z: torch.where(scored, z, z + 30.0))
        moved = float(model.loss(with_rng(batch)).metrics["disc_loss"])
        handle.remove()
        return plain, moved

    plain, moved = perturb(m)
    assert moved == plain
    torch.manual_seed(0)
    ref = ElectraBackend(SIZE, TOK, seq_len=SEQ).eval()
    plain, moved = perturb(ref)
    assert moved > plain + 1.0


def test_electra_15_flops_are_electras():
    for conv in ("paper", "executed"):
        assert (Electra15Backend.analytic_step_flops(SIZE, VOCAB, 8, SEQ, conv)
                == ElectraBackend.analytic_step_flops(SIZE, VOCAB, 8, SEQ, conv))


# --------------------------------------------------------------------------- replace-mlm


@pytest.mark.parametrize("cls", [ReplaceMLMBackend, AllTokensMLMBackend])
def test_replace_mlm_encoder_never_sees_mask(cls):
    m = cls(SIZE, TOK, seq_len=SEQ)
    with torch.no_grad():  # a generator that would sample [MASK] everywhere, if it were allowed to
        m.gen_head.decoder.bias[TOK.mask_id] = 1e4
    gen_in, enc_in, corruptions = [], [], []
    capture_input_ids(m.generator, gen_in)
    capture_input_ids(m.discriminator, enc_in)
    capture_corruption(m, corruptions)
    batch = make_batch(16)
    out = m.loss(batch)
    assert torch.isfinite(out.loss)
    assert (gen_in[0] == TOK.mask_id).any()  # the generator is ELECTRA's: fed [MASK]
    assert not (enc_in[0] == TOK.mask_id).any()  # the encoder: generator samples instead
    assert not torch.isin(enc_in[0], torch.tensor(TOK.special_ids)).logical_and(batch["input_ids"] != enc_in[0]).any()
    c = corruptions[0]
    chosen = torch.zeros(batch["input_ids"].shape).scatter(1, c.positions, c.weights).bool()
    assert torch.equal(enc_in[0][~chosen], batch["input_ids"][~chosen])  # only the chosen positions change
    assert (enc_in[0][chosen] != batch["input_ids"][chosen]).float().mean() > 0.9  # replaced, not kept


def test_replace_mlm_loss_is_generator_plus_masked_lm():
    m = ReplaceMLMBackend(SIZE, TOK, seq_len=SEQ)
    rows = []
    m.mlm_head.register_forward_hook(lambda mod, inp, out: rows.append(out.shape))
    out = m.loss(make_batch(8))
    metrics = {k: float(v) for k, v in out.metrics.items()}
    assert metrics["loss"] == pytest.approx(metrics["gen_loss"] + metrics["mlm_loss"], rel=1e-6)
    assert metrics["mlm_loss"] == pytest.approx(math.log(VOCAB), rel=0.1)  # untrained: ~uniform
    assert rows == [(8 * C.n_predictions(SEQ, 0.15), VOCAB)]  # the chosen rows only, as BERT
    assert not hasattr(m, "disc_head") and m.encoder() is m.discriminator
    out.loss.backward()
    assert all(p.grad is not None for p in m.parameters())  # nothing left unused (DDP)


# --------------------------------------------------------------------------- all-tokens-mlm


def test_copy_mixture_by_hand():
    d, q = 0.25, 0.1
    z = torch.tensor([math.log(d / (1 - d))] * 2)  # sigmoid(z) = d
    got = copy_mixture_log_prob(z, torch.tensor([math.log(q)] * 2), torch.tensor([True, False]))
    assert got.tolist() == pytest.approx([math.log(d + (1 - d) * q), math.log((1 - d) * q)], rel=1e-6)
    # saturated copy probabilities stay finite, and so do their gradients
    z = torch.tensor([-200.0, 200.0, 200.0], requires_grad=True)
    lp = copy_mixture_log_prob(z, torch.tensor([-3.0, -3.0, -3.0]), torch.tensor([True, True, False]))
    assert lp.tolist()[:2] == pytest.approx([-3.0, 0.0], abs=1e-6) and lp[2].item() < -150
    lp.sum().backward()
    assert torch.isfinite(z.grad).all()


def test_all_tokens_mlm_predicts_every_real_token():
    m = AllTokensMLMBackend(SIZE, TOK, seq_len=SEQ)
    batch = make_batch(6, pad_rows=3)
    logits, copy, enc_in = [], [], []
    capture_output(m.mlm_head, logits)

    def keep_copy_logits(mod, inp, out):
        out.retain_grad()
        copy.append(out)

    m.copy_head.register_forward_hook(keep_copy_logits)
    capture_input_ids(m.discriminator, enc_in)
    out = m.loss(batch)

    # the loss by hand, in probabilities: p = D 1[input = original] + (1 - D) softmax[original]
    d = torch.sigmoid(copy[0].squeeze(-1).detach())
    assert ((d > 0) & (d < 1)).all() and 0 < float(out.metrics["copy_prob"]) < 1
    q = logits[0].detach().float().softmax(-1).gather(1, batch["input_ids"].reshape(-1, 1)).squeeze(1)
    copies = (enc_in[0] == batch["input_ids"]).reshape(-1).float()
    p = d * copies + (1 - d) * q
    real = batch["attention_mask"].reshape(-1).bool()
    assert copies[real].mean() < 1  # some tokens were replaced
    assert float(out.metrics["mlm_loss"]) == pytest.approx(float(-p[real].log().mean()), rel=1e-5)
    assert float(out.metrics["loss"]) == pytest.approx(float(out.metrics["gen_loss"] + out.metrics["mlm_loss"]), rel=1e-6)

    # every real position contributes to the loss, padding none
    out.loss.backward()
    grad = copy[0].grad.squeeze(-1)
    assert (grad[real] != 0).all() and (grad[~real] == 0).all()
    assert all(p.grad is not None for p in m.parameters())


def test_all_tokens_mlm_is_stable_when_the_copy_probability_saturates():
    for bias in (-1e3, 1e3):
        m = AllTokensMLMBackend(SIZE, TOK, seq_len=SEQ)
        with torch.no_grad():
            m.copy_head.bias.fill_(bias)
        out = m.loss(make_batch(4))
        out.loss.backward()
        assert torch.isfinite(out.loss)
        assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


# --------------------------------------------------------------------------- electra-gdes


def test_gdes_discriminator_loss_never_reaches_the_generator_embeddings():
    m = ElectraGDESBackend(SIZE, TOK, seq_len=SEQ)
    e_g, e_delta = m.generator.embeddings.word_embeddings.weight, m.word_delta
    assert m.generator.embeddings is not m.discriminator.embeddings
    assert m.gen_head.decoder.weight is e_g and not e_delta.any()  # E_delta starts at zero
    logits, corruptions = [], []
    capture_output(m.disc_head, logits)
    capture_corruption(m, corruptions)
    batch = make_batch()
    m.loss(batch)
    c, real = corruptions[0], batch["attention_mask"].float()
    disc_loss = (F.binary_cross_entropy_with_logits(logits[0], c.labels, reduction="none") * real).sum() / real.sum()
    g_gen, g_delta = torch.autograd.grad(disc_loss, [e_g, e_delta], allow_unused=True, retain_graph=True)
    assert g_gen is None  # sg(E_G): no path from the discriminator's loss to E_G
    assert g_delta is not None and g_delta.abs().sum() > 0
    assert not g_delta[TOK.pad_id].any()  # [PAD]'s row is never trained, as nn.Embedding's padding_idx
    g_gen, g_delta = torch.autograd.grad(c.gen_loss, [e_g, e_delta], allow_unused=True)
    assert g_gen.abs().sum() > 0 and g_delta is None  # the generator trains E_G only


def test_gdes_encoder_gets_the_merged_table_and_training_is_untouched():
    m = ElectraGDESBackend(SIZE, TOK, seq_len=SEQ).eval()
    with torch.no_grad():
        m.word_delta.normal_(std=0.1)  # as after some training
    plain = make_batch()
    batch = with_rng(plain)
    before = float(m.loss(batch).loss.detach())
    enc = m.encoder()
    assert isinstance(enc, ElectraModel) and enc is m.discriminator
    merged = m.generator.embeddings.word_embeddings.weight + m.word_delta
    assert torch.equal(enc.embeddings.word_embeddings.weight, merged)
    assert float(m.loss(with_rng(plain)).loss.detach()) == before  # writing the export table changes nothing
    # the encoder alone (fine-tuning: input_ids, no inputs_embeds) computes what the discriminator trained on
    with torch.no_grad():
        ids, am = batch["input_ids"], batch["attention_mask"]
        mask = C.encoder_mask(enc.config, am)
        assert torch.allclose(enc(input_ids=ids, attention_mask=mask).last_hidden_state, m.encode(ids, am), atol=1e-6)
    trainable = {id(p) for p in m.parameters() if p.requires_grad}
    assert id(enc.embeddings.word_embeddings.weight) not in trainable and id(m.word_delta) in trainable


# --------------------------------------------------------------------------- options


def test_bert_authors_masking_has_no_random_tokens():
    seen = []
    m = BertBackend(SIZE, TOK, seq_len=SEQ, masking="authors")
    capture_input_ids(m.encoder_model, seen)
    batch = make_batch(256, pad_rows=0)
    m.loss(batch)
    ids, new = batch["input_ids"], seen[0]
    changed = new != ids
    assert (new[changed] == TOK.mask_id).all()  # [MASK] or the original: never a random token
    chosen = 256 * int(torch.round(torch.tensor(0.15 * (SEQ - 2))))  # every row: round(15% of its 30 candidates)
    assert changed.sum() / chosen == pytest.approx(0.85, abs=0.04)
    # the default is BERT's 80/10/10: random tokens do appear there
    seen.clear()
    bert = BertBackend(SIZE, TOK, seq_len=SEQ)
    capture_input_ids(bert.encoder_model, seen)
    bert.loss(batch)
    changed = seen[0] != ids
    assert (seen[0][changed] != TOK.mask_id).sum() / chosen == pytest.approx(0.10, abs=0.04)
    with pytest.raises(ValueError, match="'bert', 'authors'"):
        BertBackend(SIZE, TOK, masking="electra")


def test_gen_size_sets_the_generator_width():
    m = ElectraBackend(SIZES["tiny"], TokenInfo(300, pad_id=0, mask_id=4, cls_id=2, sep_id=3, unk_id=1), gen_size=0.5)
    assert m.generator.config.hidden_size == SIZES["tiny"].hidden // 2 == 64
    assert m.generator.config.intermediate_size == 4 * 64
    half = ElectraBackend(SIZE, TOK, gen_size=0.5)
    assert half.generator.config.hidden_size == 16 and half.discriminator.config.hidden_size == 32
    for conv in ("paper", "executed"):  # the FLOPs follow the width, with or without a module
        assert (ElectraBackend.analytic_step_flops(SIZES["tiny"], 300, 8, 64, conv, gen_size=0.5)
                == ElectraBackend.analytic_step_flops(SIZES["tiny"], 300, 8, 64, conv, gen_hidden=64)
                == m.flops_per_step(8, 64, conv))
    assert ReplaceMLMBackend(SIZE, TOK, gen_size=1.0).generator.config.hidden_size == 32
    with pytest.raises(ValueError, match="not both"):
        ElectraBackend(SIZE, TOK, gen_size=0.5, gen_hidden=16)
    for bad in (0.0, 1.5, -0.25):
        with pytest.raises(ValueError, match="gen_size"):
            ElectraGDESBackend(SIZE, TOK, gen_size=bad)


@pytest.mark.parametrize("cls", NEW)
def test_new_backends_options_metrics_and_checkpoints(cls, tmp_path, monkeypatch):
    from transformers import AutoModel

    assert MODELS.get(cls.name) is cls and cls.description and "\n" not in cls.description
    with pytest.raises(TypeError, match="gen_hiden"):
        cls(SIZE, TOK, gen_hiden=8)
    with pytest.raises(ValueError, match="mask_prob"):
        cls(SIZE, TOK, mask_prob=0.0)
    if cls in (ReplaceMLMBackend, AllTokensMLMBackend):
        with pytest.raises(TypeError, match="disc_weight"):  # no detection loss to weigh
            cls(SIZE, TOK, disc_weight=1.0)
    m = cls(SIZE, TOK, seq_len=SEQ, mask_prob=0.25, temperature=0.5)
    out = m.loss(make_batch(4))
    assert "loss" in out.metrics and math.isfinite(float(out.metrics["loss"]))
    for k, v in out.metrics.items():
        assert isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad, k
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = m.encoder()
    enc.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert torch.equal(loaded.embeddings.word_embeddings.weight, enc.embeddings.word_embeddings.weight)


# --------------------------------------------------------------------------- FLOPs of every backend


@pytest.mark.parametrize("name", PRETRAINING)
def test_executed_flops_match_the_flop_counter(name):
    cls = MODELS.get(name)
    m: Backend = cls(SIZE, TOK, seq_len=SEQ, mask_prob=0.25)  # every masked objective takes mask_prob
    batch = make_batch(2)
    analytic = m.flops_per_step(2, SEQ, "executed").total
    measured = C.flops.measure_step_flops(m, batch)
    assert measured == pytest.approx(analytic, rel=0.01)
    if cls.__module__.startswith("models."):  # the built-ins account for every matmul: exact
        assert measured == pytest.approx(analytic, rel=1e-9)
    assert m.flops_per_step(2, SEQ, "executed").total != cls(SIZE, TOK, seq_len=SEQ).flops_per_step(2, SEQ, "executed").total
    for conv in ("paper", "executed"):
        assert m.flops_per_step(32, 128, conv).total > 0 and m.inference_flops(128, conv).total > 0
        if hasattr(cls, "analytic_step_flops"):  # `bench flops` answers without building the module
            assert cls.analytic_step_flops(SIZE, VOCAB, 32, 128, conv, mask_prob=0.25) == m.flops_per_step(32, 128, conv)
            assert cls.analytic_inference_flops(SIZE, VOCAB, 128, conv) == m.inference_flops(128, conv)


def test_all_tokens_mlm_paper_head_covers_every_position():
    base = AllTokensMLMBackend.analytic_step_flops(SIZES["small"], 30522, 128, 128, "paper").components
    bert = BertBackend.analytic_step_flops(SIZES["small"], 30522, 128, 128, "paper").components
    assert base["mlm_head"] == pytest.approx(bert["mlm_head"] / 0.15625, rel=1e-12)  # the script's fraction -> 1
    ex = AllTokensMLMBackend.analytic_step_flops(SIZES["small"], 30522, 128, 128, "executed").components
    h, e, v = 256, 128, 30522
    assert ex["mlm_head"] == 3 * 2 * 128 * 128 * (h * e + e * v)  # every row, forward + backward
    assert ex["copy_head"] == 3 * 2 * 128 * 128 * h
