"""BERT masked language modelling (Devlin et al. 2019), on the same encoder as ELECTRA's discriminator."""

from __future__ import annotations

import torch
from transformers import ElectraModel

from bench.backend import Backend, BackendOutput, FlopBreakdown, TokenInfo
from bench.objectives import (
    TiedMLMHead,
    build_encoder,
    check_mask_prob,
    check_options,
    corrupt,
    encoder_config,
    encoder_mask,
    gather_positions,
    mlm_loss,
    n_predictions,
    sample_mask_positions,
)
from bench.objectives import flops
from bench.objectives.encoders import SizePreset
from bench.registry import register_model

# (share -> [MASK], share -> a random token) of the chosen positions; the rest stay unchanged
MASKINGS = {
    "bert": (0.8, 0.1),  # Devlin et al.: 80% [MASK], 10% random, 10% kept
    "authors": (0.85, 0.0),  # the ELECTRA authors' code for its BERT baseline: 85% [MASK], 15% kept, none random
}


@register_model("bert")
class BertBackend(Backend):
    name = "bert"
    description = "BERT masked LM: 15% of tokens masked (80/10/10), cross-entropy on the masked positions"
    option_names = ("mask_prob", "masking")

    def __init__(self, size: SizePreset, tokens: TokenInfo, *, seq_len: int = 128, mask_prob: float = 0.15,
                 masking: str = "bert", **options) -> None:
        super().__init__()
        check_options(self.name, options, self.option_names)
        check_mask_prob(mask_prob)
        if masking not in MASKINGS:
            raise ValueError(f"masking must be one of {', '.join(repr(k) for k in MASKINGS)}, got {masking!r}")
        self.size, self.tokens, self.seq_len, self.mask_prob = size, tokens, seq_len, mask_prob
        self.masking = masking
        self.mask_frac, self.random_frac = MASKINGS[masking]
        # ElectraModel, not BertModel: the same encoder as ELECTRA's discriminator (embedding projection
        # included), so the comparison differs only in the objective
        self.encoder_model = build_encoder(encoder_config(size, tokens))
        self.mlm_head = TiedMLMHead(self.encoder_model.config, self.encoder_model.embeddings.word_embeddings)

    def loss(self, batch: dict[str, torch.Tensor]) -> BackendOutput:
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        n_pred = n_predictions(input_ids.size(1), self.mask_prob)
        rng = batch.get("rng")  # draws that do not depend on the number of processes (RowRandom)
        positions, weights = sample_mask_positions(
            input_ids, attention_mask, self.tokens.special_ids, n_pred, mask_prob=self.mask_prob, rng=rng
        )
        masked = corrupt(input_ids, positions, weights, self.tokens, mask_frac=self.mask_frac,
                         random_frac=self.random_frac, rng=rng)
        mask = encoder_mask(self.encoder_model.config, attention_mask)
        hidden = self.encoder_model(input_ids=masked, attention_mask=mask,
                                    token_type_ids=batch.get("token_type_ids")).last_hidden_state
        logits = self.mlm_head(gather_positions(hidden, positions))  # masked rows only
        loss, acc = mlm_loss(logits, input_ids.gather(1, positions), weights)
        return BackendOutput(loss, {"loss": loss.detach(), "mlm_loss": loss.detach(), "mlm_acc": acc})

    @staticmethod
    def analytic_step_flops(
        size: SizePreset, vocab_size: int, batch_size: int, seq_len: int, convention: str = "paper",
        *, mask_prob: float = 0.15, **_: object,
    ) -> FlopBreakdown:
        """FLOPs of one training step, from the configuration alone (no module built)."""
        enc = flops.encoder_shape(size, vocab_size)
        n_pred = n_predictions(seq_len, mask_prob)
        b, s, c = batch_size, seq_len, convention
        return flops.training_step(c, {
            "encoder.embeddings": flops.embeddings_forward(enc, b, s, c),
            "encoder.blocks": flops.blocks_forward(enc, b, s, c),
            "mlm_head": flops.mlm_head_forward(enc, b, s, n_pred, c),
        })

    @staticmethod
    def analytic_inference_flops(size: SizePreset, vocab_size: int, seq_len: int, convention: str = "paper") -> FlopBreakdown:
        return flops.encoder_inference_flops(flops.encoder_shape(size, vocab_size), seq_len, convention)

    def flops_per_step(self, batch_size: int, seq_len: int, convention: str = "paper") -> FlopBreakdown:
        return self.analytic_step_flops(self.size, self.tokens.vocab_size, batch_size, seq_len, convention, mask_prob=self.mask_prob)

    def inference_flops(self, seq_len: int, convention: str = "paper") -> FlopBreakdown:
        return self.analytic_inference_flops(self.size, self.tokens.vocab_size, seq_len, convention)

    def encoder(self) -> ElectraModel:
        return self.encoder_model
