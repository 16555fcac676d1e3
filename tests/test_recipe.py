"""`[pretrain] recipe`: paper (the default) or crammed (pre-LN, no dropout, lr 1e-3, one-cycle triangle),
applied to every backend alike, part of the run id, and loadable for fine-tuning."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from transformers import AutoModel
from transformers.models.electra.modeling_electra import ElectraEncoder, ElectraLayer

from bench.backend import TokenInfo
from bench.config import RECIPES as CONFIG_RECIPES, Experiment, PretrainSettings, load_experiment
from bench.errors import ConfigError
from bench.objectives.encoders import (PreLNElectraEncoder, PreLNElectraLayer, build_encoder, encoder_config,
                                       encoder_from_config, load_pretrained_encoder)
from bench.objectives.recipe import RECIPES, apply_recipe
from bench.plan import plan_experiment
from bench.preflight import build_backend
from bench.train.pretrain import plan_pretraining
from bench.train.schedule import schedule_for, triangle_schedule
from models.sizes import SIZES

TOKENS = TokenInfo(300, pad_id=0, mask_id=4, cls_id=2, sep_id=3, unk_id=1)


def _plan(recipe: str, **pretrain):
    exp = Experiment(models=("electra", "bert"), task="sst2", size="tiny",
                     pretrain=PretrainSettings(recipe=recipe, **pretrain))
    return plan_experiment(exp)


def _structure(encoder) -> tuple:
    return (type(encoder.encoder), tuple(type(layer) for layer in encoder.encoder.layer),
            encoder.config.hidden_dropout_prob, encoder.config.attention_probs_dropout_prob,
            bool(getattr(encoder.config, "pre_layer_norm", False)))


def test_config_and_recipe_module_name_the_same_recipes() -> None:
    assert tuple(RECIPES) == CONFIG_RECIPES and CONFIG_RECIPES[0] == PretrainSettings().recipe == "paper"


def test_crammed_changes_every_backends_encoders_identically() -> None:
    crammed, paper = _plan("crammed"), _plan("paper")
    seen = {}
    for plan, name in ((crammed, "crammed"), (paper, "paper")):
        for pt in plan.pretrain_runs:  # electra, bert and the scratch control
            torch.manual_seed(0)
            backend = build_backend(pt, plan, TOKENS)
            encoders = [backend.discriminator, backend.generator] if pt.model == "electra" else [backend.encoder()]
            for enc in encoders:
                kind, layers, *rest = _structure(enc)
                seen.setdefault(name, set()).add((kind, frozenset(layers), *rest))
            if pt.pretrains:  # the scratch control takes no step
                steps = plan_pretraining(backend, budget_flops=pt.budget.value, convention=pt.convention,
                                         batch_size=pt.batch_size, seq_len=pt.seq_len,
                                         warmup_fraction=pt.warmup_fraction)
                seen.setdefault(name + "-optim", set()).add((pt.lr, pt.warmup_fraction, steps.schedule))
    # one structure per recipe, shared by ELECTRA's discriminator and generator, BERT's encoder and scratch's
    assert seen["crammed"] == {(PreLNElectraEncoder, frozenset({PreLNElectraLayer}), 0.0, 0.0, True)}
    assert seen["paper"] == {(ElectraEncoder, frozenset({ElectraLayer}), 0.1, 0.1, False)}
    assert seen["crammed-optim"] == {(1e-3, 0.75, "triangle")}
    tiny = SIZES["tiny"]
    assert seen["paper-optim"] == {(tiny.pretrain_lr, tiny.warmup_fraction, "linear")}


def test_the_recipe_is_in_the_run_id_and_paper_ids_are_unchanged() -> None:
    crammed, paper = _plan("crammed"), _plan("paper")
    for c, p in zip(crammed.pretrain_runs, paper.pretrain_runs):
        assert c.id != p.id and c.model == p.model
        assert c.spec()["recipe"] == "crammed" and "recipe" not in p.spec()  # paper: the spec every old run had
        same = {k: v for k, v in c.spec().items() if k not in ("recipe", "lr", "warmup_fraction")}
        assert same == {k: v for k, v in p.spec().items() if k not in ("lr", "warmup_fraction")}
    assert {f.pretrain_id for f in crammed.finetune_runs}.isdisjoint({f.pretrain_id for f in paper.finetune_runs})
    # the recipe's settings alone (same lr, same warm-up share given explicitly) still make other ids
    a, b = _plan("crammed", lr=5e-4, warmup_fraction=0.1), _plan("paper", lr=5e-4, warmup_fraction=0.1)
    assert [x.id for x in a.pretrain_runs] != [x.id for x in b.pretrain_runs]
    assert a.pretrain_runs[0].lr == 5e-4 and a.pretrain_runs[0].warmup_fraction == 0.1  # flags win over the recipe


def test_an_unknown_recipe_is_a_config_error_naming_the_choices(tmp_path: Path) -> None:
    (tmp_path / "bench.toml").write_text('[pretrain]\nrecipe = "cramed"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"pretrain.recipe = 'cramed'.*paper or crammed.*Did you mean 'crammed'"):
        load_experiment(tmp_path / "bench.toml")


def test_pre_ln_layer_computes_the_pre_ln_formula() -> None:
    torch.manual_seed(0)
    model = build_encoder(encoder_config(apply_recipe(SIZES["tiny"], "crammed"), TOKENS)).eval()
    ids = torch.randint(5, 300, (2, 16))
    with torch.no_grad():
        x = model.embeddings(input_ids=ids)
        for layer in model.encoder.layer:  # x + Attn(LN_a(x)), then h + FFN(LN_o(h)), no mask (all ones)
            a = layer.attention
            q = a.self.query(a.output.LayerNorm(x))
            k = a.self.key(a.output.LayerNorm(x))
            v = a.self.value(a.output.LayerNorm(x))
            heads = a.self.num_attention_heads

            def split(t: torch.Tensor) -> torch.Tensor:
                return t.view(2, 16, heads, -1).transpose(1, 2)

            w = torch.softmax(split(q) @ split(k).transpose(-1, -2) / math.sqrt(q.size(-1) // heads), -1)
            ctx = (w @ split(v)).transpose(1, 2).reshape(2, 16, -1)
            h = x + a.output.dense(ctx)
            x = h + layer.output.dense(layer.intermediate(layer.output.LayerNorm(h)))
        expected = model.encoder.final_layer_norm(x)
        got = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_a_pre_ln_checkpoint_round_trips_through_save_pretrained(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_encoder(encoder_config(apply_recipe(SIZES["tiny"], "crammed"), TOKENS))
    with torch.no_grad():
        model.encoder.final_layer_norm.weight.uniform_(0.5, 1.5)  # trained-looking values, not the init's
        model.encoder.final_layer_norm.bias.uniform_(-0.5, 0.5)
    model.eval().save_pretrained(tmp_path, safe_serialization=True)
    ids, mask = torch.randint(5, 300, (3, 12)), torch.ones(3, 12, dtype=torch.long)
    with torch.no_grad():
        want = model(input_ids=ids, attention_mask=mask).last_hidden_state
        loaded = load_pretrained_encoder(tmp_path).eval()
        got = loaded(input_ids=ids, attention_mask=mask).last_hidden_state
        plain = AutoModel.from_pretrained(tmp_path).eval()  # what an unaware loader builds: post-LN, no final LN
        wrong = plain(input_ids=ids, attention_mask=mask).last_hidden_state
    assert _structure(loaded) == _structure(model)
    torch.testing.assert_close(got, want)
    assert not torch.allclose(wrong, want, atol=1e-3)  # why fine-tuning must load through load_pretrained_encoder
    fresh = encoder_from_config(loaded.config)  # an untrained reference of the same config is pre-LN too
    assert _structure(fresh)[:2] == _structure(model)[:2]


def test_a_paper_checkpoint_loads_as_before(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_encoder(encoder_config(SIZES["tiny"], TOKENS)).eval()
    model.save_pretrained(tmp_path, safe_serialization=True)
    assert "pre_layer_norm" not in (tmp_path / "config.json").read_text(encoding="utf-8")
    loaded = load_pretrained_encoder(tmp_path)
    assert type(loaded.encoder) is ElectraEncoder and not hasattr(loaded.encoder, "final_layer_norm")


def test_triangle_schedule_is_crammings_one_cycle() -> None:
    f = triangle_schedule(75, 100, 0.25)
    assert f(0) == pytest.approx(0.25) and f(75) == pytest.approx(1.0) and f(100) == 0.0
    assert f(37.5) == pytest.approx(0.625) and f(87.5) == pytest.approx(0.5)
    assert schedule_for("triangle", 75, 100)(0) == pytest.approx(0.25)
    assert schedule_for("linear", 10, 100)(5) == pytest.approx(0.5 * 0.95)
    with pytest.raises(ValueError, match="unknown learning-rate schedule"):
        schedule_for("cosine", 10, 100)


def test_a_crammed_run_follows_the_triangle_and_trains_without_dropout(tmp_path: Path) -> None:
    from bench.train.pretrain import OptimSettings, pretrain
    from models.bert import BertBackend
    from models.sizes import SizePreset

    micro = SizePreset(name="micro", description="", hidden=32, layers=1, heads=2, ffn=64, embedding=32,
                       gen_hidden=16, gen_heads=1, gen_ffn=32, vocab_size=300, max_position=64, seq_len=16,
                       pretrain_batch=4)
    size = apply_recipe(micro, "crammed")
    torch.manual_seed(0)
    backend = BertBackend(size, TOKENS, seq_len=16)
    blocks = torch.randint(5, 300, (16, 16), dtype=torch.int32)
    blocks[:, 0], blocks[:, -1] = TOKENS.cls_id, TOKENS.sep_id
    steps = 8
    plan = plan_pretraining(backend, budget_flops=steps * backend.flops_per_step(4, 16).total, convention="paper",
                            batch_size=4, seq_len=16, warmup_fraction=size.warmup_fraction)
    assert plan.schedule == "triangle" and plan.steps == steps
    result = pretrain(backend, blocks, plan, OptimSettings(lr=size.pretrain_lr), pad_id=0, out_dir=tmp_path,
                      save=lambda m, d: None, progress=False, resume=None, log_every=1, precision="fp32")
    lrs = [m.value for m in result.series if m.name == "lr"]
    f = triangle_schedule(0.75 * steps, steps, 0.25)
    assert lrs == pytest.approx([1e-3 * f(s + 0.5) for s in range(steps)])
    assert not any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in backend.modules())
