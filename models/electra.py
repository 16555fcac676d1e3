"""ELECTRA replaced-token detection (Clark et al. 2020).

A small generator (masked LM, 1/4 width, same depth) fills masked positions with samples; the
discriminator labels every token original/replaced. Generator and discriminator share the
whole embeddings module; only the discriminator is kept for fine-tuning.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import ElectraModel
from transformers.models.electra.modeling_electra import ElectraDiscriminatorPredictions

from bench.backend import Backend, BackendOutput, FlopBreakdown, TokenInfo
from bench.objectives import (
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


@register_model("electra")
class ElectraBackend(Backend):
    name = "electra"
    description = "ELECTRA replaced-token detection: small MLM generator + discriminator, loss MLM + 50 x detection"
    option_names = ("mask_prob", "disc_weight", "gen_hidden", "temperature")

    def __init__(
        self,
        size: SizePreset,
        tokens: TokenInfo,
        *,
        seq_len: int = 128,
        mask_prob: float = 0.15,
        disc_weight: float = 50.0,
        gen_hidden: int | None = None,
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
        self.gen_hidden, gen_heads, gen_ffn = generator_dims(size, gen_hidden)

        self.discriminator = build_encoder(encoder_config(size, tokens))
        self.disc_head = ElectraDiscriminatorPredictions(self.discriminator.config)  # dense h->h, GELU, dense h->1
        init_like_hf(self.disc_head, self.discriminator.config.initializer_range)

        gen_config = encoder_config(size, tokens, hidden=self.gen_hidden, heads=gen_heads, ffn=gen_ffn)
        self.generator = build_encoder(gen_config)
        # tie the whole embeddings module (word, position, token type, LayerNorm), as the paper
        self.generator.embeddings = self.discriminator.embeddings
        self.gen_head = TiedMLMHead(gen_config, self.discriminator.embeddings.word_embeddings)

    # ------------------------------------------------------------------ objective

    def loss(self, batch: dict[str, torch.Tensor]) -> BackendOutput:
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        n_pred = n_predictions(input_ids.size(1), self.mask_prob)
        rng = batch.get("rng")  # draws that do not depend on the number of processes (RowRandom)
        positions, weights = sample_mask_positions(
            input_ids, attention_mask, self.tokens.special_ids, n_pred, mask_prob=self.mask_prob, rng=rng
        )
        masked = corrupt(input_ids, positions, weights, self.tokens, mask_frac=MASK_FRAC, random_frac=0.0, rng=rng)

        # generator: MLM logits at the gathered masked rows only (B * n_pred), never at all positions
        gen_mask = encoder_mask(self.generator.config, attention_mask)
        gen_hidden = self.generator(input_ids=masked, attention_mask=gen_mask).last_hidden_state
        gen_logits = self.gen_head(gather_positions(gen_hidden, positions))
        targets = input_ids.gather(1, positions)
        gen_loss, gen_acc = mlm_loss(gen_logits, targets, weights)

        # replacements: Gumbel-max samples, no gradient into the generator from the discriminator
        sampled = gumbel_sample(gen_logits.detach(), self.temperature, rng=rng)
        disc_input, labels = replace_and_label(input_ids, positions, weights, sampled)

        disc_mask = encoder_mask(self.discriminator.config, attention_mask)
        disc_hidden = self.discriminator(input_ids=disc_input, attention_mask=disc_mask).last_hidden_state
        disc_logits = self.disc_head(disc_hidden)
        real = attention_mask.float()
        per_token = F.binary_cross_entropy_with_logits(disc_logits.float(), labels, reduction="none")
        n_real = real.sum().clamp(min=1.0)
        disc_loss = (per_token * real).sum() / n_real

        loss = gen_loss + self.disc_weight * disc_loss
        with torch.no_grad():
            disc_acc = (((disc_logits > 0).float() == labels).float() * real).sum() / n_real
            replaced_frac = (labels * real).sum() / n_real
        metrics = {  # detached tensors: the loop reads them once per logging window, not every step
            "loss": loss.detach(),
            "gen_loss": gen_loss.detach(),
            "gen_acc": gen_acc,
            "disc_loss": disc_loss.detach(),
            "disc_acc": disc_acc,
            "replaced_frac": replaced_frac,
            "disc_base_entropy": binary_entropy(replaced_frac),  # BCE of a detector that learned nothing
        }
        return BackendOutput(loss, metrics)

    # ------------------------------------------------------------------ FLOPs

    @staticmethod
    def analytic_step_flops(
        size: SizePreset, vocab_size: int, batch_size: int, seq_len: int, convention: str = "paper",
        *, mask_prob: float = 0.15, gen_hidden: int | None = None, **_: object,
    ) -> FlopBreakdown:
        """FLOPs of one training step, from the configuration alone (no module built)."""
        disc = flops.encoder_shape(size, vocab_size)
        gen = flops.generator_shape(size, vocab_size, generator_dims(size, gen_hidden))  # tied: embedding size e
        n_pred = n_predictions(seq_len, mask_prob)
        b, s, c = batch_size, seq_len, convention
        return flops.training_step(c, {
            "generator.embeddings": flops.embeddings_forward(gen, b, s, c),
            "generator.blocks": flops.blocks_forward(gen, b, s, c),
            "generator.head": flops.mlm_head_forward(gen, b, s, n_pred, c),
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
