"""Pieces shared by the pretraining backends: encoder config, masking, sampling, tied MLM head.

Small pure functions in the spirit of lucidrains/electra-pytorch, so each one can be tested
alone. Not a backend itself (the leading underscore keeps the registry from importing it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import ElectraConfig, ElectraModel
from transformers.masking_utils import create_bidirectional_mask
from transformers.models.electra.modeling_electra import ElectraGeneratorPredictions

from bench.backend import TokenInfo
from models.sizes import SizePreset


# --------------------------------------------------------------------------- config


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


def check_options(backend: str, options: dict[str, Any], known: tuple[str, ...]) -> None:
    """Unknown keyword options are a TypeError that names them (the lead maps it to a config error)."""
    if options:
        names = ", ".join(repr(k) for k in sorted(options))
        allowed = ", ".join(known) if known else "none"
        raise TypeError(f"backend {backend!r}: unknown option(s) {names}; its options are: {allowed}")


def check_mask_prob(mask_prob: float) -> None:
    if not 0.0 < mask_prob < 1.0:
        raise ValueError(f"mask_prob must be in (0, 1), got {mask_prob}")


# --------------------------------------------------------------------------- randomness


@dataclass(frozen=True)
class RowRandom:
    """Random draws that do not depend on how a global batch is split over processes.

    Every process holds a generator in the same state and draws for the whole global batch
    (`total` rows), then keeps its own rows [offset, offset + rows): so 1 process and N
    processes mask the same tokens and sample the same replacements for every example. The
    pretraining loop puts one in `batch["rng"]`; without it the helpers below use torch's
    global generator on the local rows.
    """

    generator: torch.Generator
    offset: int  # this process's first row of the global batch
    rows: int  # its rows
    total: int  # rows of the global batch

    def _global(self, shape: tuple[int, ...]) -> tuple[tuple[int, ...], slice]:
        per_row, rest = divmod(shape[0], self.rows)  # e.g. n_pred gathered slots per row
        if rest:
            raise ValueError(f"a draw of shape {shape} is not a whole number of rows per example ({self.rows} rows)")
        return (self.total * per_row, *shape[1:]), slice(self.offset * per_row, (self.offset + self.rows) * per_row)

    def rand(self, shape: tuple[int, ...], device: torch.device | str) -> torch.Tensor:
        full, mine = self._global(tuple(shape))
        return torch.rand(full, generator=self.generator, device=device)[mine]

    def randint(self, high: int, shape: tuple[int, ...], device: torch.device | str) -> torch.Tensor:
        full, mine = self._global(tuple(shape))
        return torch.randint(high, full, generator=self.generator, device=device)[mine]


def uniform(shape: tuple[int, ...], device: torch.device | str, rng: RowRandom | None = None) -> torch.Tensor:
    """U[0, 1) draws of `shape` (first dim: rows of this process's batch, or a multiple of them)."""
    return torch.rand(shape, device=device) if rng is None else rng.rand(tuple(shape), device)


def integers(high: int, shape: tuple[int, ...], device: torch.device | str, rng: RowRandom | None = None) -> torch.Tensor:
    return torch.randint(high, shape, device=device) if rng is None else rng.randint(high, tuple(shape), device)


# --------------------------------------------------------------------------- masking


def n_predictions(seq_len: int, mask_prob: float) -> int:
    """Masked positions per sequence: a fixed count, so the executed FLOPs of a step are deterministic."""
    return min(seq_len, max(1, int(round(mask_prob * seq_len))))


def candidate_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor, special_ids: tuple[int, ...]) -> torch.Tensor:
    """True where a position may be masked: a real token that is not [CLS]/[SEP]/[PAD]/[MASK]/[UNK]."""
    special = torch.tensor(special_ids, device=input_ids.device)
    return attention_mask.bool() & ~torch.isin(input_ids, special)


def sample_mask_positions(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    special_ids: tuple[int, ...],
    n_pred: int,
    *,
    mask_prob: float | None = None,
    rng: RowRandom | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Choose `n_pred` distinct slots per row, uniformly among candidates; with `mask_prob`, only
    round(mask_prob x the row's candidates) of them (at least 1, at most n_pred) are masked.

    Returns (positions [B, n_pred] long, weights [B, n_pred] float; 1 = masked). Unused slots get
    weight 0 and stay unchanged, so the shapes (and the FLOPs) never depend on the data while a
    padded row still has 15% of its own tokens masked, as in the original ELECTRA code.
    """
    cand = candidate_mask(input_ids, attention_mask, special_ids)
    # random scores in [0, 1) for candidates, -1 for the rest: top-k picks candidates first
    scores = uniform(tuple(input_ids.shape), input_ids.device, rng).masked_fill(~cand, -1.0)
    positions = scores.topk(n_pred, dim=1).indices
    weights = cand.gather(1, positions).float()
    if mask_prob is not None:
        n_cand = cand.sum(dim=1, keepdim=True).float()
        k = torch.round(mask_prob * n_cand).clamp(min=1, max=n_pred)
        slot = torch.arange(n_pred, device=input_ids.device).unsqueeze(0)
        weights = weights * (slot < k).float()  # top-k is sorted: the first k slots are the masked ones
    return positions, weights


def corrupt(
    input_ids: torch.Tensor,
    positions: torch.Tensor,
    weights: torch.Tensor,
    tokens: TokenInfo,
    *,
    mask_frac: float,
    random_frac: float,
    rng: RowRandom | None = None,
) -> torch.Tensor:
    """Copy of `input_ids` with each chosen position -> [MASK] (mask_frac), a random token
    (random_frac, uniform over non-special ids) or unchanged (the rest). Weight-0 slots stay as they are."""
    u = uniform(tuple(positions.shape), input_ids.device, rng)
    original = input_ids.gather(1, positions)
    new = original.clone()
    new = torch.where(u < mask_frac, torch.full_like(new, tokens.mask_id), new)
    if random_frac > 0:
        pool = non_special_ids(tokens, input_ids.device)
        rand_tok = pool[integers(len(pool), tuple(positions.shape), input_ids.device, rng)]
        is_rand = (u >= mask_frac) & (u < mask_frac + random_frac)
        new = torch.where(is_rand, rand_tok, new)
    new = torch.where(weights > 0, new, original)
    return input_ids.scatter(1, positions, new)


def non_special_ids(tokens: TokenInfo, device: torch.device | str = "cpu") -> torch.Tensor:
    ids = torch.arange(tokens.vocab_size, device=device)
    return ids[~torch.isin(ids, torch.tensor(tokens.special_ids, device=device))]


def gather_positions(hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """hidden [B, L, H], positions [B, n] -> [B * n, H]: heads run on masked rows only."""
    b, n = positions.shape
    idx = positions.unsqueeze(-1).expand(b, n, hidden.size(-1))
    return hidden.gather(1, idx).reshape(b * n, hidden.size(-1))


# --------------------------------------------------------------------------- sampling


def gumbel_noise(shape: torch.Size, device: torch.device | str, eps: float = 1e-9,
                 rng: RowRandom | None = None) -> torch.Tensor:
    u = uniform(tuple(shape), device, rng)
    return -torch.log(-torch.log(u + eps) + eps)


def gumbel_sample(logits: torch.Tensor, temperature: float = 1.0, rng: RowRandom | None = None) -> torch.Tensor:
    """Gumbel-max: a sample from softmax(logits / temperature) along the last dim, no gradient."""
    with torch.no_grad():
        noise = gumbel_noise(logits.shape, logits.device, rng=rng)
        return (logits.float() / max(temperature, 1e-9) + noise).argmax(dim=-1)


def replace_and_label(
    input_ids: torch.Tensor, positions: torch.Tensor, weights: torch.Tensor, sampled: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Discriminator input (samples at the weighted chosen positions) and labels (1 = replaced).

    A sample equal to the original token is labelled real (0), as in the paper.
    """
    original = input_ids.gather(1, positions)
    new = torch.where(weights > 0, sampled.view_as(positions), original)  # weight-0 slots keep their token
    disc_input = input_ids.scatter(1, positions, new)
    return disc_input, (disc_input != input_ids).float()


# --------------------------------------------------------------------------- heads and losses


def init_like_hf(module: nn.Module, std: float) -> None:
    """Heads built outside a PreTrainedModel get HF's init (normal(0, 0.02), zero bias), not PyTorch's."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class TiedMLMHead(nn.Module):
    """dense hidden->embedding, GELU, LayerNorm, then logits through the (tied) word embeddings + bias.

    The transform is HF's ElectraGeneratorPredictions (same parameter names as HF's
    ElectraForMaskedLM); the output projection's weight IS the word-embedding matrix.
    """

    def __init__(self, config: ElectraConfig, word_embeddings: nn.Embedding) -> None:
        super().__init__()
        self.transform = ElectraGeneratorPredictions(config)
        init_like_hf(self.transform, config.initializer_range)
        self.decoder = nn.Linear(config.embedding_size, config.vocab_size)
        self.decoder.weight = word_embeddings.weight  # tied: one tensor, one optimiser entry
        nn.init.zeros_(self.decoder.bias)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """rows [N, hidden] (gathered masked positions) -> logits [N, vocab]."""
        return self.decoder(self.transform(rows))


def weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return (values * weights).sum() / weights.sum().clamp(min=1.0)


def binary_entropy(p: float | torch.Tensor) -> float | torch.Tensor:
    """Entropy in nats of a Bernoulli(p): the BCE of a detector that only knows the base rate.

    A float gives a float; a tensor gives a tensor on its device (no host-device sync)."""
    if isinstance(p, torch.Tensor):
        q = p.clamp(1e-12, 1 - 1e-12)
        h = -(q * q.log() + (1 - q) * (1 - q).log())
        return torch.where((p <= 0) | (p >= 1), torch.zeros_like(h), h)
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def mlm_loss(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy and accuracy (a detached 0-dim tensor) over the weighted gathered rows
    (weight-0 slots ignored)."""
    w = weights.reshape(-1)
    t = targets.reshape(-1)
    loss = weighted_mean(F.cross_entropy(logits.float(), t, reduction="none"), w)
    with torch.no_grad():
        acc = weighted_mean((logits.argmax(-1) == t).float(), w)
    return loss, acc
