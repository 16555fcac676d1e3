"""FLOP accounting: the paper's script reproduced, executed FLOPs checked against FlopCounterMode."""

from __future__ import annotations

import time

import pytest
import torch

from bench.train import flops
from bench.backend import AnalyticFlops, FlopBreakdown, TokenInfo
from bench.train.flops import (
    EncoderShape,
    PaperTransformer,
    default_token_info,
    flops_report,
    measure_step_flops,
    paper_electra_train_flops,
    paper_script_flops,
    steps_for_budget,
)
from bench.registry import MODELS
from models.bert import BertBackend
from models.electra import ElectraBackend
from models.scratch import ScratchBackend
from models.sizes import SIZES

# What google-research/electra flops_computation.py prints for its own entries (run verbatim).
SCRIPT_ELECTRA_SMALL = 1.293743798272e18  # 1M steps, batch 128, seq 128, generator h64 tied
SCRIPT_BERT_SMALL = 1.4187399146496e18  # 1.45M steps, batch 128, seq 128, e128
SCRIPT_ELECTRA_BASE = 6.424541834277683e19  # 766k steps, batch 256, seq 512, generator h256
SCRIPT_SMALL_INFER = 3677281792.0  # get_infer_flops of h256 x 12, e128, seq 128 (Table 1: 3.7e9)


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # shared 2-core machine: one thread is far faster under contention
    torch.manual_seed(0)
    yield
    torch.set_num_threads(n)


def make_batch(tok: TokenInfo, b: int, seq: int) -> dict[str, torch.Tensor]:
    low = 5 if tok.vocab_size <= 103 else 104
    ids = torch.randint(low, tok.vocab_size, (b, seq))
    ids[:, 0] = tok.cls_id
    ids[:, -1] = tok.sep_id
    am = torch.ones_like(ids)
    ids[0, seq - 7 :], am[0, seq - 7 :] = tok.pad_id, 0  # padding changes nothing: shapes are fixed
    ids[0, seq - 8] = tok.sep_id
    return {"input_ids": ids, "attention_mask": am}


# --------------------------------------------------------------------------- paper convention


def test_port_reproduces_script_entries():
    got = paper_script_flops()
    assert got["electra_small"] == pytest.approx(SCRIPT_ELECTRA_SMALL, rel=1e-12)
    assert got["bert_small"] == pytest.approx(SCRIPT_BERT_SMALL, rel=1e-12)
    assert got["electra_base"] == pytest.approx(SCRIPT_ELECTRA_BASE, rel=1e-12)
    # paper Tables 1/8 columns (2 significant digits there)
    assert f"{got['bert_small']:.2g}" == "1.4e+18"
    assert f"{got['bert_base']:.2g}" == "6.4e+19" and f"{got['electra_base']:.2g}" == "6.4e+19"
    assert f"{got['electra_1.75M']:.2g}" == "3.1e+21" and f"{got['roberta']:.2g}" == "3.2e+21"


def test_electra_small_preset_paper_flops():
    per_step = ElectraBackend.analytic_step_flops(SIZES["small"], 30522, 128, 128, "paper")
    total = per_step.total * 1_000_000
    assert total == pytest.approx(SCRIPT_ELECTRA_SMALL, rel=1e-9)
    assert f"{total:.3g}" == "1.29e+18"
    assert total == pytest.approx(paper_electra_train_flops(256, 12, 64, 12, 128, 1e6, True, e=128, s=128), rel=1e-12)
    # components add up to the script's generator + discriminator split
    gen = PaperTransformer(64, 12, s=128, e=128).train_flops(128, 1)
    disc = PaperTransformer(256, 12, s=128, e=128).train_flops(128, 1, discriminator=True)
    c = per_step.components
    assert sum(v for k, v in c.items() if k.startswith("generator.")) == pytest.approx(gen, rel=1e-12)
    assert sum(v for k, v in c.items() if k.startswith("discriminator.")) == pytest.approx(disc, rel=1e-12)


def test_paper_variants_small_preset():
    """The ELECTRA paper's section 3.2 variants, in the script's terms (per step, batch 128, seq 128)."""
    from models.all_tokens_mlm import AllTokensMLMBackend
    from models.replace_mlm import ReplaceMLMBackend

    gen = PaperTransformer(64, 12, s=128, e=128).train_flops(128, 1)
    bert = PaperTransformer(256, 12, s=128, e=128).train_flops(128, 1)
    electra = ElectraBackend.analytic_step_flops(SIZES["small"], 30522, 128, 128, "paper").total
    for name in ("electra-15", "electra-gdes"):  # the same networks as ELECTRA's
        assert MODELS.get(name).analytic_step_flops(SIZES["small"], 30522, 128, 128, "paper").total == electra
    replace = ReplaceMLMBackend.analytic_step_flops(SIZES["small"], 30522, 128, 128, "paper").total
    assert replace == pytest.approx(gen + bert, rel=1e-12)  # ELECTRA's generator + BERT-Small
    # All-Tokens MLM: the script's output head with output_frac 1.0 (as its GPT entry) + a 2h copy layer
    every = PaperTransformer(256, 12, s=128, e=128, output_frac=1.0).train_flops(128, 1)
    all_tokens = AllTokensMLMBackend.analytic_step_flops(SIZES["small"], 30522, 128, 128, "paper").total
    assert all_tokens == pytest.approx(gen + every + 2 * 128 * 128 * 2 * 256, rel=1e-12)


def test_bert_small_preset_paper_flops():
    total = BertBackend.analytic_step_flops(SIZES["small"], 30522, 128, 128, "paper").total * 1_450_000
    assert total == pytest.approx(SCRIPT_BERT_SMALL, rel=1e-9)
    assert f"{total:.3g}" == "1.42e+18"


def test_base_preset_and_inference_paper_flops():
    total = ElectraBackend.analytic_step_flops(SIZES["base"], 30522, 256, 512, "paper").total * 766_000
    assert total == pytest.approx(SCRIPT_ELECTRA_BASE, rel=1e-9)
    infer = ElectraBackend.analytic_inference_flops(SIZES["small"], 30522, 128, "paper").total
    assert infer == pytest.approx(SCRIPT_SMALL_INFER, rel=1e-12)
    assert f"{infer:.2g}" == "3.7e+09"


# --------------------------------------------------------------------------- executed convention


def test_executed_formula_by_hand():
    enc = EncoderShape(vocab_size=100, hidden=8, layers=2, heads=2, ffn=16, embedding=4)
    b, s = 3, 5
    assert flops.embeddings_forward(enc, b, s, "executed") == 2 * b * s * 4 * 8
    per_token = 3 * 2 * 8 * 8 + 2 * 8 * 8 + 2 * 2 * 8 * 16 + 2 * 2 * s * 8
    assert flops.blocks_forward(enc, b, s, "executed") == 2 * b * s * per_token
    assert flops.mlm_head_forward(enc, b, s, 2, "executed") == 2 * b * 2 * (8 * 4 + 4 * 100)
    assert flops.detection_head_forward(enc, b, s, "executed") == 2 * b * s * (8 * 8 + 8)
    same = EncoderShape(vocab_size=100, hidden=8, layers=2, heads=2, ffn=16, embedding=8)
    assert flops.embeddings_forward(same, b, s, "executed") == 0  # sparse lookup, no projection
    step = flops.training_step("executed", {"x": 10.0})
    assert step.total == 30.0 and flops.training_step("paper", {"x": 10.0}).total == 20.0


@pytest.mark.parametrize("cls", [ElectraBackend, BertBackend])
@pytest.mark.parametrize("vocab", [200, 8192])  # the real tiny preset's vocabulary, and a small one
def test_executed_matches_flop_counter(cls, vocab):
    tok = default_token_info(vocab)
    m = cls(SIZES["tiny"], tok, seq_len=128)
    batch = make_batch(tok, 2, 128)
    analytic = m.flops_per_step(2, 128, "executed").total
    measured = measure_step_flops(m, batch)
    assert measured == pytest.approx(analytic, rel=0.05)
    assert measured == pytest.approx(analytic, rel=1e-9)  # in fact exact: every matmul is accounted for


def test_measure_counts_fused_attention_and_restores_grads():
    tok = default_token_info(200)
    m = ElectraBackend(SIZES["tiny"], tok, seq_len=64)
    batch = make_batch(tok, 2, 64)
    m.train()
    train = measure_step_flops(m, batch)
    m.eval()  # SDPA takes its fused CPU kernel: attention must still be counted
    assert measure_step_flops(m, batch) == train
    assert all(p.grad is None for p in m.parameters())
    assert train == pytest.approx(m.flops_per_step(2, 64, "executed").total, rel=1e-9)  # attention included


def test_conventions_validated():
    with pytest.raises(ValueError, match="convention"):
        ElectraBackend.analytic_step_flops(SIZES["tiny"], 8192, 32, 128, "tf")


def test_steps_for_budget():
    assert steps_for_budget(100.0, 10.0) == 10
    assert steps_for_budget(101.0, 10.0) == 11
    assert steps_for_budget(3e13, 1e13) == 3
    assert steps_for_budget(0.0, 10.0) == 0
    assert steps_for_budget(0.3, 0.1) == 3  # float 0.3 / 0.1 = 3.0000000000000004
    with pytest.raises(ValueError):
        steps_for_budget(1.0, 0.0)


def test_flops_report_is_instant_and_consistent():
    t = time.perf_counter()
    r = flops_report("electra", "base", steps=1000, batch=256, seq=128, convention="paper", inference=False)
    assert time.perf_counter() - t < 1.0  # analytic only, no module built
    per = ElectraBackend.analytic_step_flops(SIZES["base"], 30522, 256, 128, "paper")
    assert r["total"] == pytest.approx(per.total * 1000)
    assert set(r["components"]) == set(per.components)
    assert r["vocab_size"] == 30522 and r["per_step"] == pytest.approx(per.total)
    b = flops_report("bert", "tiny", steps=10, batch=32, seq=128, convention="executed", inference=False, vocab_size=4000)
    assert b["total"] == pytest.approx(10 * BertBackend.analytic_step_flops(SIZES["tiny"], 4000, 32, 128, "executed").total)
    s = flops_report("scratch", "tiny", steps=10, batch=32, seq=128, convention="paper", inference=False)
    assert s["total"] == 0
    i = flops_report("bert", "small", steps=2, batch=8, seq=128, convention="paper", inference=True)
    assert i["total"] == pytest.approx(SCRIPT_SMALL_INFER)  # one sequence's forward
    assert all(isinstance(v, float) for v in i["components"].values())


def test_flops_report_measure():
    r = flops_report("electra", "tiny", steps=3, batch=32, seq=128, convention="paper", inference=False,
                     vocab_size=300, measure=True, measure_batch=2)
    assert r["measured_batch"] == 2
    assert r["measured_ratio"] == pytest.approx(1.0, abs=0.05)
    assert r["executed_per_step"] == pytest.approx(ElectraBackend.analytic_step_flops(SIZES["tiny"], 300, 32, 128, "executed").total)


def test_scratch_flops():
    assert ScratchBackend.analytic_step_flops(SIZES["small"], 30522, 128, 128, "executed") == FlopBreakdown("executed", {})


def test_default_token_info():
    t = default_token_info(30522)
    assert (t.pad_id, t.unk_id, t.cls_id, t.sep_id, t.mask_id) == (0, 100, 101, 102, 103)
    assert len(set(default_token_info(50).special_ids)) == 5


@pytest.mark.parametrize("model", [n for n in MODELS.names() if isinstance(MODELS.get(n), AnalyticFlops)])
def test_class_flops_agree_with_an_instance(model):
    """The contract: a backend class's analytic FLOPs (used without building it) equal its instance's."""
    cls, tok = MODELS.get(model), default_token_info(200)
    options = {"mask_prob": 0.3} if "mask_prob" in getattr(cls, "option_names", ()) else {}
    backend = cls(SIZES["tiny"], tok, seq_len=64, **options)
    for convention in ("paper", "executed"):
        assert (cls.analytic_step_flops(SIZES["tiny"], 200, 4, 64, convention, **options).total
                == backend.flops_per_step(4, 64, convention).total), convention
        assert (cls.analytic_inference_flops(SIZES["tiny"], 200, 64, convention).total
                == backend.inference_flops(64, convention).total), convention


def test_every_built_in_backend_answers_flops_without_being_built():
    assert all(isinstance(MODELS.get(n), AnalyticFlops) for n in MODELS.names()), MODELS.names()
