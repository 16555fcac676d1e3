"""The encoder every backend trains: an `ElectraModel` built from a size preset.

Every built-in backend's encoder is an `ElectraModel` (BERT's architecture plus an optional
embedding projection), so a comparison differs only in the objective. A backend that builds
its networks with these functions gets the harness's FLOP formulas (`bench.objectives.flops`)
for free, and the pretraining recipe (`bench.objectives.recipe`) with no code of their own.

Pre-LayerNorm blocks (the `crammed` recipe). HF's `ElectraModel` has post-LN blocks only. A pre-LN
encoder here is an `ElectraModel` whose config carries `pre_layer_norm = True` (saved in config.json)
and whose layers and encoder are switched to `PreLNElectraLayer` / `PreLNElectraEncoder`
(`make_pre_ln`): the same modules and parameter names, each block's two LayerNorms moved in front
of their sublayer, x + Attn(LN_a(x)) then x + FFN(LN_o(x)), plus one new module,
`encoder.final_layer_norm`, after the last block. `save_pretrained` writes it like any other; a
plain `AutoModel.from_pretrained` would rebuild post-LN blocks and drop the final LayerNorm (a
silently different network), so a pre-LN checkpoint is loaded with `load_pretrained_encoder`
(and a fresh one of its config made with `encoder_from_config`), which restore the structure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import ElectraConfig, ElectraModel
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import BaseModelOutputWithPastAndCrossAttentions
from transformers.models.electra.modeling_electra import ElectraEncoder, ElectraLayer

from bench.backend import TokenInfo
from models.sizes import SizePreset

__all__ = ["PRE_LN", "PreLNElectraEncoder", "PreLNElectraLayer", "SizePreset", "build_encoder",
           "encoder_config", "encoder_from_config", "encoder_mask", "generator_dims", "is_pre_ln",
           "load_pretrained_encoder", "make_pre_ln"]

PRE_LN = "pre_layer_norm"  # the config attribute (config.json key) that marks a pre-LN encoder


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
        **({PRE_LN: True} if getattr(size, "pre_ln", False) else {}),  # the recipe's (RecipePreset); absent = post-LN
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
    """A randomly initialised ElectraModel (no pooler, no head); pre-LN where the config says so."""
    return encoder_from_config(config)


def is_pre_ln(config: Any) -> bool:
    return bool(getattr(config, PRE_LN, False))


class PreLNElectraLayer(ElectraLayer):
    """An ElectraLayer computing x + Attn(LN_a(x)), then h + FFN(LN_o(h)), with the layer's own modules:
    LN_a is `attention.output.LayerNorm`, LN_o `output.LayerNorm` (post-LN applies them after each sum).
    Dropout sits where HF puts it (after each sublayer's output projection). No cross-attention."""

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                *args: Any, **kwargs: Any) -> torch.Tensor:
        kwargs.pop("encoder_attention_mask", None)
        kwargs.pop("cache", None)
        attention, out = self.attention, self.output
        attn, _ = attention.self(attention.output.LayerNorm(hidden_states), attention_mask=attention_mask, **kwargs)
        hidden = hidden_states + attention.output.dropout(attention.output.dense(attn))
        ffn = out.dense(self.intermediate(out.LayerNorm(hidden)))
        return hidden + out.dropout(ffn)


class PreLNElectraEncoder(ElectraEncoder):
    """ElectraEncoder whose output goes through `final_layer_norm` (a pre-LN residual stream is unnormalised)."""

    final_layer_norm: nn.LayerNorm

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> BaseModelOutputWithPastAndCrossAttentions:
        out = super().forward(hidden_states, *args, **kwargs)
        out.last_hidden_state = self.final_layer_norm(out.last_hidden_state)
        return out


def make_pre_ln(model: ElectraModel) -> ElectraModel:
    """Switch `model` (an ElectraModel) to pre-LN blocks in place and give it a final LayerNorm
    (weight 1, bias 0, as HF initialises every LayerNorm). Idempotent; returns `model`."""
    config = model.config
    if config.is_decoder or config.add_cross_attention:
        raise ValueError("pre-LN blocks are built for encoders only (no decoder, no cross-attention)")
    setattr(config, PRE_LN, True)
    encoder = model.encoder
    for layer in encoder.layer:
        layer.__class__ = PreLNElectraLayer
    if not isinstance(encoder, PreLNElectraEncoder):
        encoder.__class__ = PreLNElectraEncoder
        first = next(model.parameters())
        encoder.final_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps).to(
            device=first.device, dtype=first.dtype)
    return model


def encoder_from_config(config: Any) -> Any:
    """A fresh encoder of `config`: AutoModel.from_config, made pre-LN where the config says so. Use it
    wherever a pre-LN checkpoint's config may meet `AutoModel.from_config` (e.g. an untrained reference)."""
    if isinstance(config, ElectraConfig):
        model = ElectraModel(config)
    else:
        from transformers import AutoModel

        model = AutoModel.from_config(config)
    return make_pre_ln(model) if is_pre_ln(config) else model


def load_pretrained_encoder(name: str | Path, config: Any = None, **kwargs: Any) -> Any:
    """`AutoModel.from_pretrained(name, config=config, trust_remote_code=False, **kwargs)`, with a pre-LN
    checkpoint (config `pre_layer_norm`) rebuilt as pre-LN: the blocks switched and the final LayerNorm's
    weights read from the checkpoint (a missing one is an error, never a silent post-LN model).
    Any other checkpoint (the hub's ELECTRA or BERT, a paper-recipe run) loads exactly as before."""
    from transformers import AutoConfig, AutoModel

    if config is None:
        config = AutoConfig.from_pretrained(str(name), trust_remote_code=False)
    if not is_pre_ln(config):
        return AutoModel.from_pretrained(str(name), config=config, trust_remote_code=False, **kwargs)
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the final LayerNorm is "unexpected" to a post-LN ElectraModel: loaded below
    try:
        model = AutoModel.from_pretrained(str(name), config=config, trust_remote_code=False, **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
    make_pre_ln(model)
    state = _final_norm_state(Path(str(name)))
    missing = [k for k in ("weight", "bias") if k not in state]
    if missing:
        raise ValueError(f"{name}: config.json says {PRE_LN}, but the weights hold no encoder.final_layer_norm "
                         f"({', '.join(missing)}): the checkpoint is incomplete")
    model.encoder.final_layer_norm.load_state_dict(state)
    return model


def _final_norm_state(folder: Path) -> dict[str, torch.Tensor]:
    """encoder.final_layer_norm.{weight,bias} from a save_pretrained folder's safetensors file(s)."""
    from safetensors import safe_open

    prefix = "encoder.final_layer_norm."
    out: dict[str, torch.Tensor] = {}
    if not folder.is_dir():  # a hub id: its cached snapshot
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(str(folder), local_files_only=True))
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():
                short = key.removeprefix("electra.")  # a head model's prefix, should one be loaded
                if short.startswith(prefix):
                    out[short[len(prefix):]] = handle.get_tensor(key)
    return out


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
