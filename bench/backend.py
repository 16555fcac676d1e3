"""The contract every pretraining backend (in `models/`) fulfils.

A backend is an `nn.Module` built from a size preset and the tokenizer's special ids. The
harness only ever calls what is declared here: it never knows which objective it trains.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

CONVENTIONS = ("paper", "executed")


@dataclass(frozen=True)
class TokenInfo:
    """What a backend needs to know about the vocabulary."""

    vocab_size: int
    pad_id: int
    mask_id: int
    cls_id: int
    sep_id: int
    unk_id: int

    @property
    def special_ids(self) -> tuple[int, ...]:
        return (self.pad_id, self.mask_id, self.cls_id, self.sep_id, self.unk_id)


class BackendOutput(NamedTuple):
    """`loss` is what the optimiser minimises; `metrics` are for logging: detached 0-dim tensors
    (read by the loop once per logging window, so a step never waits for the device) or floats."""

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor | float]


@dataclass(frozen=True)
class FlopBreakdown:
    """FLOPs of one training step (or one forward, for inference) by named component."""

    convention: str
    components: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return float(sum(self.components.values()))


class Backend(nn.Module):
    """Base class of pretraining backends.

    Subclasses set `name`/`description`, build their `transformers` modules in `__init__`
    and implement the four methods below. `pretrains = False` marks a control that is never
    trained (the `scratch` backend): the harness skips pretraining and saves its encoder as is.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    pretrains: ClassVar[bool] = True

    def loss(self, batch: dict[str, Any]) -> BackendOutput:
        """batch: `input_ids` [B, L] long and `attention_mask` [B, L] (1 = real token) of this
        process's rows, and `rng`, a `bench.objectives.RowRandom` whose draws do not depend on how
        the global batch is split over processes (use it for masking and sampling, so that 1 and
        N processes train on the same corrupted examples)."""
        raise NotImplementedError

    def forward(self, batch: dict[str, Any]) -> BackendOutput:
        # The loop calls the module, not `loss`, so DistributedDataParallel's hooks run.
        return self.loss(batch)

    def flops_per_step(self, batch_size: int, seq_len: int, convention: str = "paper") -> FlopBreakdown:
        """Analytic FLOPs of one optimiser step (forward + backward) on a full batch."""
        raise NotImplementedError

    def inference_flops(self, seq_len: int, convention: str = "paper") -> FlopBreakdown:
        """Analytic FLOPs of one forward pass of the encoder on one sequence."""
        raise NotImplementedError

    def encoder(self) -> nn.Module:
        """The `transformers` PreTrainedModel to save for fine-tuning (no pretraining head)."""
        raise NotImplementedError
