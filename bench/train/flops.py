"""FLOP accounting: analytic, per component, in two conventions, and measured.

`paper`    the ELECTRA authors' convention: a faithful port of google-research/electra
           `flops_computation.py` (2mn per matmul row, element-wise costs, dense one-hot
           embedding lookups, the MLM output head over 15.625% of positions, backward = forward
           so training = 2 x forward). `PaperTransformer` below mirrors the script's
           `TransformerHparams` line by line, so the paper's FLOP column is reproduced exactly.
`executed` what this code runs: every matmul (2mnk) forward, attention QK^T and AV included,
           embedding lookups free, heads only at the rows they are computed on, backward =
           2 x forward (training = 3 x forward). Matmul FLOPs only, as
           `torch.utils.flop_counter.FlopCounterMode` counts; `measure_step_flops` checks it.

This module knows transformer *components* (embeddings, blocks, MLM head, detection head);
which components a backend has is the backend's business (see `models/`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from bench.backend import CONVENTIONS, AnalyticFlops, Backend, FlopBreakdown, TokenInfo
from bench.registry import MODELS
from models.sizes import SizePreset, get_size

# --------------------------------------------------------------------------- paper convention
# Constants and formulas as in google-research/electra flops_computation.py.

DROPOUT_FLOPS = 4  # random number, >=, multiply by mask, multiply by 1/(1-p)
LAYER_NORM_FLOPS = 5  # mean, variance (square + sum), bias, scale
ACTIVATION_FLOPS = 8  # GELU, tanh approximation
SOFTMAX_FLOPS = 5  # max/subtract, exp, sum, divide
PAPER_OUTPUT_FRAC = 0.15625  # 20 predictions of 128 positions: the script's MLM-head fraction


@dataclass(frozen=True)
class PaperTransformer:
    """The script's `TransformerHparams`: FLOPs of training/running one transformer.

    Quirks kept on purpose (they are part of the convention): the attention-output LayerNorm
    costs 5 per token, not 5 x hidden; heads default to size 64 (`max(h // 64, 1)`).
    """

    h: int  # hidden size
    l: int  # layers
    s: int = 512  # sequence length
    v: int = 30522  # vocab size
    e: int | None = None  # embedding size (None: = h)
    i: int | None = None  # intermediate size (None: 4h)
    heads: int | None = None  # None: max(h // 64, 1)
    head_size: int | None = None
    output_frac: float = PAPER_OUTPUT_FRAC
    sparse_embed_lookup: bool = False
    decoder: bool = False

    @property
    def emb(self) -> int:
        return self.h if self.e is None else self.e

    @property
    def inter(self) -> int:
        return self.h * 4 if self.i is None else self.i

    @property
    def kqv(self) -> int:
        return self.h if self.head_size is None else self.head_size * self.heads

    @property
    def n_heads(self) -> int:
        return max(self.h // 64, 1) if self.heads is None else self.heads

    def block_flops(self) -> float:
        """Forward FLOPs of one transformer block over one sequence."""
        h, s, i, kqv, nh = self.h, self.s, self.inter, self.kqv, self.n_heads
        m = 2 if self.decoder else 1
        block = dict(
            kqv=3 * 2 * h * kqv * m,
            kqv_bias=3 * kqv * m,
            attention_scores=2 * kqv * s * m,
            attn_softmax=SOFTMAX_FLOPS * s * nh * m,
            attention_dropout=DROPOUT_FLOPS * s * nh * m,
            attention_scale=s * nh * m,
            attention_weighted_avg_values=2 * h * s * m,
            attn_output=2 * h * h * m,
            attn_output_bias=h * m,
            attn_output_dropout=DROPOUT_FLOPS * h * m,
            attn_output_residual=h * m,
            attn_output_layer_norm=LAYER_NORM_FLOPS * m,
            intermediate=2 * h * i,
            intermediate_act=ACTIVATION_FLOPS * i,
            intermediate_bias=i,
            output=2 * h * i,
            output_bias=h,
            output_dropout=DROPOUT_FLOPS * h,
            output_residual=h,
            output_layer_norm=LAYER_NORM_FLOPS * h,
        )
        return sum(block.values()) * s

    def embedding_flops(self, output: bool = False) -> float:
        """Forward FLOPs of the input embeddings (output=False) or of the MLM output head."""
        e, h, s, v = self.emb, self.h, self.s, self.v
        flops: dict[str, float] = {}
        if output or not self.sparse_embed_lookup:
            flops["main_multiply"] = 2 * e * v
        if not output:
            flops.update(
                tok_type_and_position=2 * e * (s + 2),
                add_tok_type_and_position=2 * e,
                emb_layer_norm=LAYER_NORM_FLOPS * e,
                emb_dropout=DROPOUT_FLOPS * e,
            )
        if e != h or output:
            flops.update(hidden_kernel=2 * h * e, hidden_bias=e if output else h)
            if output:
                flops.update(
                    hidden_activation=ACTIVATION_FLOPS * e,
                    hidden_layernorm=LAYER_NORM_FLOPS * e,
                    output_softmax=SOFTMAX_FLOPS * v,
                    output_target_word=2 * v,
                )
                return self.output_frac * sum(flops.values()) * s
        return sum(flops.values()) * s

    def binary_classification_flops(self) -> float:
        h = self.h
        return (2 * h * h + h + ACTIVATION_FLOPS * h + 2 * h) * self.s

    def train_flops(self, batch_size: int, train_steps: float, discriminator: bool = False) -> float:
        head = self.binary_classification_flops() if discriminator else self.embedding_flops(output=True)
        # 2x: backward counted equal to forward
        return 2 * batch_size * train_steps * (self.l * self.block_flops() + self.embedding_flops(output=False) + head)

    def infer_flops(self) -> float:
        return self.l * self.block_flops() + self.embedding_flops(output=False) + self.binary_classification_flops()


def paper_electra_train_flops(
    h_d: int, l_d: int, h_g: int, l_g: int, batch_size: int, train_steps: float, tied_embeddings: bool,
    e: int | None = None, s: int = 512, output_frac: float = PAPER_OUTPUT_FRAC,
) -> float:
    """The script's `get_electra_train_flops`: discriminator + generator (tied: generator uses e)."""
    e = h_d if e is None else e
    disc = PaperTransformer(h_d, l_d, s=s, e=e, output_frac=output_frac).train_flops(batch_size, train_steps, True)
    gen = PaperTransformer(h_g, l_g, s=s, e=e if tied_embeddings else None, output_frac=output_frac)
    return disc + gen.train_flops(batch_size, train_steps)


def paper_script_flops() -> dict[str, float]:
    """The entries of the script's MODEL_FLOPS that it computes itself (paper Table 1/8)."""
    t5_enc = PaperTransformer(1024, 24, v=32000, i=65536, heads=128, head_size=128, output_frac=0.0)
    t5_dec = PaperTransformer(1024, 24, v=32000, i=65536, heads=128, head_size=128, output_frac=1.0, decoder=True)
    return {
        "gpt": PaperTransformer(768, 12, v=40000, output_frac=1.0).train_flops(128, 960800),
        "bert_small": PaperTransformer(256, 12, e=128, s=128).train_flops(128, 1.45e6),
        "bert_base": PaperTransformer(768, 12).train_flops(256, 1e6),
        "bert_large": PaperTransformer(1024, 24).train_flops(256, 1e6),
        "electra_small": paper_electra_train_flops(256, 12, 64, 12, 128, 1e6, True, s=128, e=128),
        "electra_base": paper_electra_train_flops(768, 12, 256, 12, 256, 766000, True),
        "electra_400k": paper_electra_train_flops(1024, 24, 256, 24, 2048, 400000, True),
        "electra_1.75M": paper_electra_train_flops(1024, 24, 256, 24, 2048, 1750000, True),
        "roberta": PaperTransformer(1024, 24, v=50265).train_flops(8000, 500000),
        "albert": PaperTransformer(4096, 12, v=30000, e=128).train_flops(4096, 1.5e6),
        "t5_11b": t5_enc.train_flops(2048, 1e6) + t5_dec.train_flops(2048, 1e6),
    }


# --------------------------------------------------------------------------- components


@dataclass(frozen=True)
class EncoderShape:
    """What the FLOPs of an ElectraModel encoder depend on."""

    vocab_size: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    embedding: int

    def paper(self, seq_len: int) -> PaperTransformer:
        # heads left to the script's default (size 64); FFN as configured (4h in every preset)
        return PaperTransformer(self.hidden, self.layers, s=seq_len, v=self.vocab_size, e=self.embedding, i=self.ffn)


TRAIN_MULTIPLIER = {"paper": 2.0, "executed": 3.0}  # forward + backward, in units of a forward


def check_convention(convention: str) -> str:
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown FLOP convention {convention!r}; expected one of {', '.join(CONVENTIONS)}")
    return convention


def embeddings_forward(enc: EncoderShape, batch: int, seq: int, convention: str) -> float:
    """Embedding layer (+ projection to hidden when embedding != hidden), one forward of a batch."""
    if check_convention(convention) == "paper":
        return float(batch * enc.paper(seq).embedding_flops(output=False))
    # lookups are gathers (0 FLOPs); only the projection is a matmul
    return 2.0 * batch * seq * enc.embedding * enc.hidden if enc.embedding != enc.hidden else 0.0


def blocks_forward(enc: EncoderShape, batch: int, seq: int, convention: str) -> float:
    """All transformer blocks, one forward of a batch."""
    if check_convention(convention) == "paper":
        return float(batch * enc.layers * enc.paper(seq).block_flops())
    h, i = enc.hidden, enc.ffn
    # per token: QKV 6h^2, attention output 2h^2, FFN 4hi, QK^T and AV 2*2*seq*h
    return float(enc.layers * batch * seq * (8 * h * h + 4 * h * i + 4 * seq * h))


def mlm_head_forward(enc: EncoderShape, batch: int, seq: int, n_pred: int, convention: str) -> float:
    """MLM head (dense hidden->embedding, GELU, LayerNorm, tied output to the vocabulary)."""
    if check_convention(convention) == "paper":
        return float(batch * enc.paper(seq).embedding_flops(output=True))  # over 15.625% of positions
    rows = batch * n_pred  # gathered masked positions only
    return 2.0 * rows * (enc.hidden * enc.embedding + enc.embedding * enc.vocab_size)


def detection_head_forward(enc: EncoderShape, batch: int, seq: int, convention: str) -> float:
    """Per-token binary head (dense hidden->hidden, GELU, dense hidden->1) at every position."""
    if check_convention(convention) == "paper":
        return float(batch * enc.paper(seq).binary_classification_flops())
    return 2.0 * batch * seq * (enc.hidden * enc.hidden + enc.hidden)


def training_step(convention: str, forward: dict[str, float]) -> FlopBreakdown:
    """Forward FLOPs per component -> FLOPs of a training step (forward + backward)."""
    mult = TRAIN_MULTIPLIER[check_convention(convention)]
    return FlopBreakdown(convention, {k: mult * v for k, v in forward.items()})


def encoder_inference_flops(enc: EncoderShape, seq: int, convention: str) -> FlopBreakdown:
    """One forward of the encoder on one sequence.

    paper: the script's `get_infer_flops` (includes its per-token binary classifier);
    executed: embeddings projection + blocks (a [CLS] classifier is a few hundred FLOPs).
    """
    parts = {
        "encoder.embeddings": embeddings_forward(enc, 1, seq, convention),
        "encoder.blocks": blocks_forward(enc, 1, seq, convention),
    }
    if convention == "paper":
        parts["classifier"] = detection_head_forward(enc, 1, seq, convention)
    return FlopBreakdown(convention, parts)


def steps_for_budget(budget_flops: float, flops_per_step: float) -> int:
    """Number of full steps whose cumulative FLOPs first reach or exceed the budget."""
    if flops_per_step <= 0:
        raise ValueError(f"flops_per_step must be positive, got {flops_per_step}")
    if budget_flops <= 0:
        return 0
    n = math.ceil(budget_flops / flops_per_step)
    if (n - 1) * flops_per_step >= budget_flops:  # guard against float round-up
        n -= 1
    return n


# --------------------------------------------------------------------------- measurement


def _cpu_flash_forward(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_flash_backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    # backward = 2 x forward (grad of QK^T and of AV), as the math path's bmms; no recompute counted
    return 2 * sdpa_flop_count(query_shape, key_shape, value_shape)


# SDPA's fused CPU kernel has no formula in torch: without these, attention counts as zero
# whenever it runs (eval mode, attention dropout 0). Passed per counter, so nothing global changes.
_CPU_SDPA_FORMULAS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_forward,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_flash_backward,
}


def measure_step_flops(backend: Backend, batch: dict[str, torch.Tensor]) -> float:
    """FLOPs FlopCounterMode counts for one real forward + backward of `backend.loss(batch)`.

    Gradients the step leaves behind are restored to what they were, so this can run on a
    model mid-training. Counting is slow: measure once per configuration.
    """
    params = [p for p in backend.parameters() if p.requires_grad]
    saved = [p.grad for p in params]
    for p in params:
        p.grad = None
    try:
        with FlopCounterMode(display=False, custom_mapping=_CPU_SDPA_FORMULAS) as counter:
            out = backend.loss(batch)
            out.loss.backward()
        return float(counter.get_total_flops())
    finally:
        for p, g in zip(params, saved):
            p.grad = g


# --------------------------------------------------------------------------- report


def default_token_info(vocab_size: int) -> TokenInfo:
    """Special ids of the BERT WordPiece vocabulary, or the first five ids of a small synthetic one."""
    if vocab_size > 103:
        return TokenInfo(vocab_size=vocab_size, pad_id=0, unk_id=100, cls_id=101, sep_id=102, mask_id=103)
    if vocab_size < 8:
        raise ValueError(f"vocab_size {vocab_size} is too small (5 special ids + real tokens)")
    return TokenInfo(vocab_size=vocab_size, pad_id=0, unk_id=1, cls_id=2, sep_id=3, mask_id=4)


def analytic_flops(
    model: str, size: str | SizePreset, *, batch: int, seq: int, convention: str, inference: bool = False,
    vocab_size: int | None = None, **options: Any,
) -> FlopBreakdown:
    """Per-step (or, with inference, per-sequence forward) FLOPs of a registered backend.

    Uses the backend class's pure `analytic_step_flops` / `analytic_inference_flops` when it is
    an `AnalyticFlops` (instant even for `base`), else builds the module and asks it.
    """
    check_convention(convention)
    preset = get_size(size) if isinstance(size, str) else size
    vocab = vocab_size or preset.vocab_size
    cls = MODELS.get(model)
    if isinstance(cls, AnalyticFlops):
        if inference:
            return cls.analytic_inference_flops(preset, vocab, seq, convention)
        return cls.analytic_step_flops(preset, vocab, batch, seq, convention, **options)
    backend = cls(preset, default_token_info(vocab), seq_len=seq, **options)
    return backend.inference_flops(seq, convention) if inference else backend.flops_per_step(batch, seq, convention)


def flops_report(
    model: str, size: str, *, steps: int, batch: int, seq: int, convention: str, inference: bool,
    vocab_size: int | None = None, measure: bool = False, measure_batch: int = 4, options: dict[str, Any] | None = None,
) -> dict:
    """What `bench flops` prints: per-component FLOPs and their `total`.

    Training: `steps` optimiser steps of `batch` x `seq`. Inference: one sequence's forward
    pass of the encoder (`steps` and `batch` ignored). With `measure` (training only), also one
    real step under FlopCounterMode on `min(batch, measure_batch)` random sequences, scaled to
    `batch` (every formula is linear in the batch), against the analytic executed FLOPs.
    """
    preset = get_size(size)
    vocab = vocab_size or preset.vocab_size
    options = options or {}
    per = analytic_flops(model, preset, batch=batch, seq=seq, convention=convention, inference=inference,
                         vocab_size=vocab, **options)
    scale = 1 if inference else steps
    components = {k: v * scale for k, v in per.components.items()}
    report: dict[str, Any] = {
        "model": model,
        "size": preset.name,
        "convention": convention,
        "inference": inference,
        "steps": 1 if inference else steps,
        "batch": 1 if inference else batch,
        "seq": seq,
        "vocab_size": vocab,
        "per_step": per.total,
        "components": components,
        "total": float(sum(components.values())),
    }
    if measure and not inference:
        report.update(measure_report(model, preset, vocab, batch, seq, min(batch, measure_batch), options))
    return report


def measure_report(model: str, preset: SizePreset, vocab: int, batch: int, seq: int, measure_batch: int,
                   options: dict[str, Any] | None = None) -> dict:
    """One real step counted by FlopCounterMode vs the analytic executed FLOPs (per step at `batch`)."""
    tokens = default_token_info(vocab)
    backend = MODELS.get(model)(preset, tokens, seq_len=seq, **(options or {}))
    if not backend.pretrains:
        return {}
    g = torch.Generator().manual_seed(0)
    low = 104 if vocab > 103 else 5  # past the special ids
    ids = torch.randint(low, vocab, (measure_batch, seq), generator=g)
    ids[:, 0], ids[:, -1] = tokens.cls_id, tokens.sep_id
    measured = measure_step_flops(backend, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    measured *= batch / measure_batch
    executed = backend.flops_per_step(batch, seq, "executed").total
    return {
        "measured_per_step": measured,
        "measured_batch": measure_batch,
        "executed_per_step": executed,
        "measured_ratio": measured / executed,
    }
