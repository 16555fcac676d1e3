"""Prediction heads and losses: the tied MLM head, weighted means, entropies."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import ElectraConfig
from transformers.models.electra.modeling_electra import ElectraGeneratorPredictions

__all__ = ["TiedMLMHead", "binary_entropy", "init_like_hf", "mlm_loss", "weighted_mean"]


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
