"""The encoder every backend trains: an `ElectraModel` built from a size preset.

Every built-in backend's encoder is an `ElectraModel` (BERT's architecture plus an optional
embedding projection), so a comparison differs only in the objective. A backend that builds
its networks with these functions gets the harness's FLOP formulas (`bench.objectives.flops`)
for free.
"""

from __future__ import annotations

import torch
from transformers import ElectraConfig, ElectraModel
from transformers.masking_utils import create_bidirectional_mask

from bench.backend import TokenInfo
from models.sizes import SizePreset

__all__ = ["SizePreset", "build_encoder", "encoder_config", "encoder_mask", "generator_dims"]


def encoder_config(
    size: SizePreset,
    tokens: TokenInfo,
    *,
    hidden: int | None = None,
    heads: int | None = None,
    ffn: int | None = None,
    attn_implementation: str = "sdpa",
) -> ElectraConfig:
    """ElectraConfig for an encoder of `size` (or of a narrower width, for the generator).

    Every backend's encoder is an `ElectraModel`: HF's ELECTRA architecture is BERT's plus an
    optional embedding projection (needed by BERT-Small's embedding 128 / hidden 256), so
    identical encoders make a comparison differ only in the objective.
    """
    return ElectraConfig(
        vocab_size=tokens.vocab_size,
        embedding_size=size.embedding,  # the generator keeps the discriminator's: embeddings are shared
        hidden_size=hidden or size.hidden,
        num_hidden_layers=size.layers,
        num_attention_heads=heads or size.heads,
        intermediate_size=ffn or size.ffn,
        max_position_embeddings=size.max_position,
        pad_token_id=tokens.pad_id,
        hidden_dropout_prob=size.dropout,
        attention_probs_dropout_prob=size.dropout,
        attn_implementation=attn_implementation,  # sdpa for speed; measure_step_flops switches to eager
    )


def encoder_mask(config: ElectraConfig, attention_mask: torch.Tensor) -> torch.Tensor:
    """The 4-D attention mask `config`'s attention implementation wants, from a 2-D one.

    Pass it to the encoder instead of the 2-D mask: transformers would otherwise ask on every
    forward whether the mask is all ones (to drop it), which makes the host wait for the device;
    packed pretraining blocks carry padding in most batches anyway.
    """
    meta = attention_mask.new_empty((*attention_mask.shape, 0), dtype=torch.float32)  # batch, length, dtype, device
    return create_bidirectional_mask(config, meta, attention_mask, allow_is_bidirectional_skip=False)


def build_encoder(config: ElectraConfig) -> ElectraModel:
    """A randomly initialised ElectraModel (no pooler, no head)."""
    return ElectraModel(config)


def generator_dims(size: SizePreset, gen_hidden: int | None) -> tuple[int, int, int]:
    """(hidden, heads, ffn) of the generator; an overridden width keeps the discriminator's head size."""
    if gen_hidden is None or gen_hidden == size.gen_hidden:
        return size.gen_hidden, size.gen_heads, size.gen_ffn
    if gen_hidden <= 0:
        raise ValueError(f"gen_hidden must be positive, got {gen_hidden}")
    head_size = size.hidden // size.heads
    heads = max(1, gen_hidden // head_size)
    if gen_hidden % heads:  # e.g. a width that is no multiple of the head size: one head
        heads = 1
    return gen_hidden, heads, 4 * gen_hidden  # FFN 4x hidden, as every preset
