"""ELECTRA replaced-token detection (Clark et al. 2020).

A small generator (masked LM, 1/4 width, same depth) fills masked positions with samples; the
discriminator labels every token original/replaced. Generator and discriminator share the
whole embeddings module; only the discriminator is kept for fine-tuning.

The step is split into small hooks so that the paper's variants (section 3.2, `models/electra_15.py`,
`models/replace_mlm.py`, `models/all_tokens_mlm.py`) and DeBERTa-V3's embedding sharing
(`models/electra_gdes.py`) override one idea each:

- `tie_embeddings()`      how the generator's embeddings relate to the discriminator's
- `corrupt_with_generator(input_ids, attention_mask, rng, token_type_ids)`  masking, generator MLM, samples
- `sample(gen_logits, rng)`                                  the replacements drawn from the generator
- `encode(input_ids, attention_mask, token_type_ids)`        the main encoder's hidden states
- `detection_scope(attention_mask, positions, weights)`      where the detection loss is averaged
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from transformers import ElectraModel
from transformers.models.electra.modeling_electra import ElectraDiscriminatorPredictions

from bench.backend import Backend, BackendOutput, FlopBreakdown, TokenInfo
from bench.objectives import (
    RowRandom,
    TiedMLMHead,
    binary_entropy,
    build_encoder,
    check_mask_prob,
    check_options,
    corrupt,
    encoder_config,
    encoder_mask,
    gather_positions,
    generator_dims,
    gumbel_sample,
    init_like_hf,
    mlm_loss,
    n_predictions,
    replace_and_label,
    sample_mask_positions,
)
from bench.objectives import flops
from bench.objectives.encoders import SizePreset
from bench.registry import register_model

MASK_FRAC = 0.85  # of chosen positions -> [MASK]; the other 15% stay (the generator still predicts them)


def generator_width(size: SizePreset, gen_hidden: int | None, gen_size: float | None) -> int | None:
    """The generator's hidden size: `gen_hidden`, or `gen_size` x the discriminator's (the paper's
    Figure 3 varies it as a share: 1/4 to 1/2 works best), or None for the preset's."""
    if gen_size is None:
        return gen_hidden
    if gen_hidden is not None:
        raise ValueError(f"give gen_size ({gen_size}) or gen_hidden ({gen_hidden}), not both")
    if not 0.0 < gen_size <= 1.0:
        raise ValueError(f"gen_size must be in (0, 1] (a share of the hidden size {size.hidden}), got {gen_size}")
    width = round(gen_size * size.hidden)
    if width < 1:
        raise ValueError(f"gen_size {gen_size} x hidden {size.hidden} rounds to a generator of width 0")
    return width


class Corruption(NamedTuple):
    """What the generator half of a step hands the main encoder."""

    positions: torch.Tensor  # [B, n_pred] chosen slots
    weights: torch.Tensor  # [B, n_pred] 1 = masked, 0 = unused slot
    gen_loss: torch.Tensor
    gen_acc: torch.Tensor
    inputs: torch.Tensor  # [B, L] input_ids with generator samples at the masked positions
    labels: torch.Tensor  # [B, L] float, 1 = replaced (a sample equal to the original is real)


@register_model("electra")
class ElectraBackend(Backend):
    name = "electra"
    description = "ELECTRA replaced-token detection: small MLM generator + discriminator, loss MLM + 50 x detection"
    option_names = ("mask_prob", "disc_weight", "gen_hidden", "gen_size", "temperature")

    def __init__(
        self,
        size: SizePreset,
        tokens: TokenInfo,
        *,
        seq_len: int = 128,
        mask_prob: float = 0.15,
        disc_weight: float = 50.0,
        gen_hidden: int | None = None,
        gen_size: float | None = None,
        temperature: float = 1.0,
        **options,
    ) -> None:
        super().__init__()
        check_options(self.name, options, self.option_names)
        check_mask_prob(mask_prob)
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if disc_weight < 0:
            raise ValueError(f"disc_weight must be >= 0, got {disc_weight}")
        self.size, self.tokens, self.seq_len = size, tokens, seq_len
        self.mask_prob, self.disc_weight, self.temperature = mask_prob, disc_weight, temperature
        self.gen_hidden, gen_heads, gen_ffn = generator_dims(size, generator_width(size, gen_hidden, gen_size))

        self.discriminator = build_encoder(encoder_config(size, tokens))
        self.disc_head = ElectraDiscriminatorPredictions(self.discriminator.config)  # dense h->h, GELU, dense h->1
        init_like_hf(self.disc_head, self.discriminator.config.initializer_range)

        gen_config = encoder_config(size, tokens, hidden=self.gen_hidden, heads=gen_heads, ffn=gen_ffn)
        self.generator = build_encoder(gen_config)
        self.tie_embeddings()
        self.gen_head = TiedMLMHead(gen_config, self.generator.embeddings.word_embeddings)

    # ------------------------------------------------------------------ hooks

    def tie_embeddings(self) -> None:
        """Share the whole embeddings module (word, position, token type, LayerNorm), as the paper."""
        self.generator.embeddings = self.discriminator.embeddings

    def corrupt_with_generator(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                               rng: RowRandom | None, token_type_ids: torch.Tensor | None = None) -> Corruption:
        """Mask 15% of each row (85% [MASK], 15% kept), train the generator as an MLM there, and put
        its samples in place of the masked tokens."""
        n_pred = n_predictions(input_ids.size(1), self.mask_prob)
        positions, weights = sample_mask_positions(
            input_ids, attention_mask, self.tokens.special_ids, n_pred, mask_prob=self.mask_prob, rng=rng
        )
        masked = corrupt(input_ids, positions, weights, self.tokens, mask_frac=MASK_FRAC, random_frac=0.0, rng=rng)

        # generator: MLM logits at the gathered masked rows only (B * n_pred), never at all positions
        gen_mask = encoder_mask(self.generator.config, attention_mask)
        gen_hidden = self.generator(input_ids=masked, attention_mask=gen_mask,
                                    token_type_ids=token_type_ids).last_hidden_state
        gen_logits = self.gen_head(gather_positions(gen_hidden, positions))
        gen_loss, gen_acc = mlm_loss(gen_logits, input_ids.gather(1, positions), weights)

        inputs, labels = replace_and_label(input_ids, positions, weights, self.sample(gen_logits, rng))
        return Corruption(positions, weights, gen_loss, gen_acc, inputs, labels)

    def sample(self, gen_logits: torch.Tensor, rng: RowRandom | None) -> torch.Tensor:
        """Gumbel-max samples, no gradient into the generator from the discriminator."""
        return gumbel_sample(gen_logits.detach(), self.temperature, rng=rng)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The discriminator's hidden states [B, L, H]."""
        mask = encoder_mask(self.discriminator.config, attention_mask)
        hidden = self.discriminator(input_ids=input_ids, attention_mask=mask, token_type_ids=token_type_ids)
        return hidden.last_hidden_state

    def detection_scope(self, attention_mask: torch.Tensor, positions: torch.Tensor,
                        weights: torch.Tensor) -> torch.Tensor:
        """[B, L] float weights of the detection loss: every real token."""
        return attention_mask.float()

    # ------------------------------------------------------------------ objective

    def loss(self, batch: dict[str, torch.Tensor]) -> BackendOutput:
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        rng = batch.get("rng")  # draws that do not depend on the number of processes (RowRandom)
        types = batch.get("token_type_ids")  # segment A / B of two-segment blocks
        c = self.corrupt_with_generator(input_ids, attention_mask, rng, types)

        disc_logits = self.disc_head(self.encode(c.inputs, attention_mask, types))
        scored = self.detection_scope(attention_mask, c.positions, c.weights)
        per_token = F.binary_cross_entropy_with_logits(disc_logits.float(), c.labels, reduction="none")
        n_scored = scored.sum().clamp(min=1.0)
        disc_loss = (per_token * scored).sum() / n_scored

        loss = c.gen_loss + self.disc_weight * disc_loss
        with torch.no_grad():
            disc_acc = (((disc_logits > 0).float() == c.labels).float() * scored).sum() / n_scored
            replaced_frac = (c.labels * scored).sum() / n_scored  # among the scored positions
        metrics = {  # detached tensors: the loop reads them once per logging window, not every step
            "loss": loss.detach(),
            "gen_loss": c.gen_loss.detach(),
            "gen_acc": c.gen_acc,
            "disc_loss": disc_loss.detach(),
            "disc_acc": disc_acc,
            "replaced_frac": replaced_frac,
            "disc_base_entropy": binary_entropy(replaced_frac),  # BCE of a detector that learned nothing
        }
        return BackendOutput(loss, metrics)

    # ------------------------------------------------------------------ FLOPs

    @staticmethod
    def generator_forward_flops(
        size: SizePreset, vocab_size: int, batch_size: int, seq_len: int, convention: str,
        mask_prob: float, gen_hidden: int | None, gen_size: float | None = None,
    ) -> dict[str, float]:
        """Forward FLOPs of the generator (embeddings, blocks, MLM head at the masked rows)."""
        dims = generator_dims(size, generator_width(size, gen_hidden, gen_size))
        gen = flops.generator_shape(size, vocab_size, dims)  # tied: embedding size e
        n_pred = n_predictions(seq_len, mask_prob)
        b, s, c = batch_size, seq_len, convention
        return {
            "generator.embeddings": flops.embeddings_forward(gen, b, s, c),
            "generator.blocks": flops.blocks_forward(gen, b, s, c),
            "generator.head": flops.mlm_head_forward(gen, b, s, n_pred, c),
        }

    @staticmethod
    def analytic_step_flops(
        size: SizePreset, vocab_size: int, batch_size: int, seq_len: int, convention: str = "paper",
        *, mask_prob: float = 0.15, gen_hidden: int | None = None, gen_size: float | None = None, **_: object,
    ) -> FlopBreakdown:
        """FLOPs of one training step, from the configuration alone (no module built)."""
        disc = flops.encoder_shape(size, vocab_size)
        b, s, c = batch_size, seq_len, convention
        return flops.training_step(c, {
            **ElectraBackend.generator_forward_flops(size, vocab_size, b, s, c, mask_prob, gen_hidden, gen_size),
            "discriminator.embeddings": flops.embeddings_forward(disc, b, s, c),
            "discriminator.blocks": flops.blocks_forward(disc, b, s, c),
            "discriminator.head": flops.detection_head_forward(disc, b, s, c),
        })

    @staticmethod
    def analytic_inference_flops(size: SizePreset, vocab_size: int, seq_len: int, convention: str = "paper") -> FlopBreakdown:
        return flops.encoder_inference_flops(flops.encoder_shape(size, vocab_size), seq_len, convention)

    def flops_per_step(self, batch_size: int, seq_len: int, convention: str = "paper") -> FlopBreakdown:
        return self.analytic_step_flops(
            self.size, self.tokens.vocab_size, batch_size, seq_len, convention,
            mask_prob=self.mask_prob, gen_hidden=self.gen_hidden,
        )

    def inference_flops(self, seq_len: int, convention: str = "paper") -> FlopBreakdown:
        return self.analytic_inference_flops(self.size, self.tokens.vocab_size, seq_len, convention)

    def encoder(self) -> ElectraModel:
        return self.discriminator
