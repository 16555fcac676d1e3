"""No pretraining: the control row of every comparison."""

from __future__ import annotations

import torch
from transformers import ElectraModel

from bench.backend import Backend, BackendOutput, FlopBreakdown, TokenInfo
from bench.objectives import build_encoder, check_options, encoder_config, flops
from bench.objectives.encoders import SizePreset
from bench.registry import register_model


@register_model("scratch")
class ScratchBackend(Backend):
    name = "scratch"
    description = "no pretraining; the control that shows whether the budget was big enough for pretraining to matter"
    pretrains = False
    option_names = ("mask_prob",)

    def __init__(self, size: SizePreset, tokens: TokenInfo, *, seq_len: int = 128, mask_prob: float = 0.15, **options) -> None:
        super().__init__()
        check_options(self.name, options, self.option_names)
        self.size, self.tokens, self.seq_len = size, tokens, seq_len
        # the same encoder as the other backends (discriminator size), left at its random init
        self.encoder_model = build_encoder(encoder_config(size, tokens))

    def loss(self, batch: dict[str, torch.Tensor]) -> BackendOutput:
        raise RuntimeError("the 'scratch' backend is never pretrained (pretrains = False): it has no loss")

    @staticmethod
    def analytic_step_flops(
        size: SizePreset, vocab_size: int, batch_size: int, seq_len: int, convention: str = "paper", **_: object,
    ) -> FlopBreakdown:
        return FlopBreakdown(flops.check_convention(convention), {})  # nothing is trained

    @staticmethod
    def analytic_inference_flops(size: SizePreset, vocab_size: int, seq_len: int, convention: str = "paper") -> FlopBreakdown:
        enc = flops.encoder_shape(size, vocab_size)
        return flops.encoder_inference_flops(enc, seq_len, convention)

    def flops_per_step(self, batch_size: int, seq_len: int, convention: str = "paper") -> FlopBreakdown:
        return self.analytic_step_flops(self.size, self.tokens.vocab_size, batch_size, seq_len, convention)

    def inference_flops(self, seq_len: int, convention: str = "paper") -> FlopBreakdown:
        return self.analytic_inference_flops(self.size, self.tokens.vocab_size, seq_len, convention)

    def encoder(self) -> ElectraModel:
        return self.encoder_model
