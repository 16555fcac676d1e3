"""ELECTRA with gradient-disentangled embedding sharing (GDES; He et al. 2021, DeBERTaV3, section 3).

In ELECTRA the generator's MLM loss and the discriminator's detection loss pull the shared token
embeddings in different directions (the paper's "tug-of-war"). GDES shares them without that:

    E_D = sg(E_G) + E_delta

The generator trains E_G with its MLM loss only (stop-gradient sg: the discriminator's loss never
reaches E_G); the discriminator reads E_G and learns a residual table E_delta, initialised to
zero so both start from the same embeddings. After training E_G + E_delta is the discriminator's
word-embedding table, and that is the table `encoder()` hands to fine-tuning.

What is shared: the word embeddings only. The generator keeps its own position/token-type/
LayerNorm and the discriminator its own, trained by its loss (DeBERTaV3 uses relative positions,
so its models share no position table; Microsoft's code would give an absolute position table the
same treatment). Everything else (masking, sampling, loss = MLM + 50 x detection, FLOPs) is
ELECTRA's: the embedding lookups are gathers and E_G + E_delta is summed per looked-up row.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import ElectraModel

from bench.objectives import encoder_mask
from bench.registry import register_model
from models.electra import ElectraBackend


@register_model("electra-gdes")
class ElectraGDESBackend(ElectraBackend):
    name = "electra-gdes"
    description = "ELECTRA with DeBERTaV3's gradient-disentangled embedding sharing: E_D = sg(E_G) + E_delta"

    def tie_embeddings(self) -> None:
        gen_words = self.generator.embeddings.word_embeddings  # E_G: the generator keeps its own embeddings module
        # E_delta: trained by the discriminator only; zero, so it starts from the generator's table
        self.word_delta = nn.Parameter(torch.zeros_like(gen_words.weight))
        # the discriminator's own table is not trained: it is where encoder() writes E_G + E_delta
        table = self.discriminator.embeddings.word_embeddings.weight
        table.requires_grad_(False)
        with torch.no_grad():
            table.copy_(gen_words.weight)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        gen_words = self.generator.embeddings.word_embeddings
        pad = gen_words.padding_idx  # as nn.Embedding: the [PAD] row gets no gradient
        # sg(E_G) + E_delta, row by row: the same vectors as a lookup in the summed table, no V x E sum per step
        embeds = F.embedding(input_ids, gen_words.weight.detach(), pad) + F.embedding(input_ids, self.word_delta, pad)
        mask = encoder_mask(self.discriminator.config, attention_mask)
        hidden = self.discriminator(inputs_embeds=embeds, attention_mask=mask, token_type_ids=token_type_ids)
        return hidden.last_hidden_state

    def encoder(self) -> ElectraModel:
        # merge now (each checkpoint): training never reads this table, so writing it changes nothing
        with torch.no_grad():
            merged = self.generator.embeddings.word_embeddings.weight + self.word_delta
            self.discriminator.embeddings.word_embeddings.weight.copy_(merged)
        return self.discriminator
