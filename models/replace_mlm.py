"""Replace MLM (Clark et al. 2020, section 3.2 and Table 5).

Masked language modelling, except that the masked-out tokens are replaced with samples from a
generator instead of [MASK]. It tests how much of ELECTRA's gain comes from never showing the
encoder [MASK], a token fine-tuning never has: in the paper (GLUE, Base size) it only slightly
improves on BERT, far below ELECTRA.

The generator is ELECTRA's (a small MLM, same depth, embeddings tied to the main encoder's, fed
85% [MASK] / 15% kept at the chosen positions); the main encoder sees its samples at every
chosen position and is trained with the masked-LM loss (tied MLM head) there.
Loss = generator MLM + main MLM. Only the main encoder is kept for fine-tuning.
"""

from __future__ import annotations

import torch

from bench.backend import BackendOutput, FlopBreakdown, TokenInfo
from bench.objectives import (
    RowRandom,
    TiedMLMHead,
    check_options,
    flops,
    gather_positions,
    mlm_loss,
    n_predictions,
)
from bench.objectives.encoders import SizePreset
from bench.registry import register_model
from models.electra import ElectraBackend


@register_model("replace-mlm")
class ReplaceMLMBackend(ElectraBackend):
    """ELECTRA's generator and corruption, with the discriminator trained as a masked LM.

    `discriminator` (ELECTRA's name, kept for the shared hooks) is the main encoder here.
    """

    name = "replace-mlm"
    description = "Replace MLM (ELECTRA paper 3.2): masked positions get generator samples, not [MASK]; MLM loss there"
    option_names = ("mask_prob", "gen_hidden", "gen_size", "temperature")

    def __init__(self, size: SizePreset, tokens: TokenInfo, *, seq_len: int = 128, mask_prob: float = 0.15,
                 gen_hidden: int | None = None, gen_size: float | None = None, temperature: float = 1.0,
                 **options) -> None:
        check_options(self.name, options, self.option_names)  # before ELECTRA's: it would accept disc_weight
        super().__init__(size, tokens, seq_len=seq_len, mask_prob=mask_prob, gen_hidden=gen_hidden,
                         gen_size=gen_size, temperature=temperature)
        del self.disc_head  # no detection here: the main encoder predicts the original tokens
        self.mlm_head = TiedMLMHead(self.discriminator.config, self.discriminator.embeddings.word_embeddings)
        # built once and moved with the module: no host-to-device copy per step; not in the state dict
        self.register_buffer("special_ids", torch.tensor(sorted(set(tokens.special_ids))), persistent=False)

    def sample(self, gen_logits: torch.Tensor, rng: RowRandom | None) -> torch.Tensor:
        # never sample a special id: a sampled [MASK] would show the encoder the token this objective removes
        return super().sample(gen_logits.detach().index_fill(-1, self.special_ids, float("-inf")), rng)

    def loss(self, batch: dict[str, torch.Tensor]) -> BackendOutput:
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        types = batch.get("token_type_ids")
        c = self.corrupt_with_generator(input_ids, attention_mask, batch.get("rng"), types)
        hidden = self.encode(c.inputs, attention_mask, types)  # generator samples where the generator saw [MASK]
        logits = self.mlm_head(gather_positions(hidden, c.positions))  # the chosen rows only, as BERT
        main_loss, main_acc = mlm_loss(logits, input_ids.gather(1, c.positions), c.weights)
        loss = c.gen_loss + main_loss
        with torch.no_grad():  # how often the sample differs from the original (the rest is a free copy)
            replaced_frac = (c.labels.gather(1, c.positions) * c.weights).sum() / c.weights.sum().clamp(min=1.0)
        return BackendOutput(loss, {
            "loss": loss.detach(), "gen_loss": c.gen_loss.detach(), "gen_acc": c.gen_acc,
            "mlm_loss": main_loss.detach(), "mlm_acc": main_acc, "replaced_frac": replaced_frac,
        })

    @staticmethod
    def analytic_step_flops(
        size: SizePreset, vocab_size: int, batch_size: int, seq_len: int, convention: str = "paper",
        *, mask_prob: float = 0.15, gen_hidden: int | None = None, gen_size: float | None = None, **_: object,
    ) -> FlopBreakdown:
        """ELECTRA's generator + a BERT-shaped main encoder (MLM head at the chosen rows)."""
        enc = flops.encoder_shape(size, vocab_size)
        b, s, c = batch_size, seq_len, convention
        return flops.training_step(c, {
            **ElectraBackend.generator_forward_flops(size, vocab_size, b, s, c, mask_prob, gen_hidden, gen_size),
            "encoder.embeddings": flops.embeddings_forward(enc, b, s, c),
            "encoder.blocks": flops.blocks_forward(enc, b, s, c),
            "mlm_head": flops.mlm_head_forward(enc, b, s, n_predictions(s, mask_prob), c),
        })
