"""ELECTRA 15% (Clark et al. 2020, section 3.2 and Table 5).

ELECTRA, except that the discriminator's loss comes only from the 15% of tokens that were
masked out of the input. It isolates how much of ELECTRA's gain comes from learning from all
input tokens: in the paper (GLUE, Base size) it falls well behind ELECTRA, close to BERT.

FLOPs are ELECTRA's: the discriminator still runs (and its head still scores) every position;
only the loss ignores most of them.
"""

from __future__ import annotations

import torch

from bench.registry import register_model
from models.electra import ElectraBackend


@register_model("electra-15")
class Electra15Backend(ElectraBackend):
    name = "electra-15"
    description = "ELECTRA 15% (ELECTRA paper 3.2): detection loss only at the masked-out positions, not all tokens"

    def detection_scope(self, attention_mask: torch.Tensor, positions: torch.Tensor,
                        weights: torch.Tensor) -> torch.Tensor:
        # 1 at the positions chosen for masking (weight-1 slots), 0 elsewhere: positions are distinct per row
        return torch.zeros_like(attention_mask, dtype=torch.float).scatter(1, positions, weights)
