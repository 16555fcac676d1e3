"""The stock Hugging Face pretraining step, as a user of the HF classes would write it: the baseline
`pretrain_speed.py --baseline hf` measures the harness's step against.

ELECTRA is a wrapper around `ElectraForMaskedLM` (generator) and `ElectraForPreTraining`
(discriminator) in the manner of lucidrains/electra-pytorch and the HF examples: vocabulary logits
at every position, Gumbel samples drawn from them, the embeddings shared and the generator's output
layer tied to them; loss = MLM + 50 x detection. BERT is `BertForMaskedLM` (or, for a preset whose
embedding width differs from its hidden width, which BERT cannot express, `ElectraForMaskedLM` on
the same encoder). Masking is DataCollatorForLanguageModeling's: Bernoulli(0.15) per real token.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import BertConfig, BertForMaskedLM, ElectraForMaskedLM, ElectraForPreTraining

from bench.backend import TokenInfo
from bench.objectives import encoder_config, generator_dims
from models.sizes import SizePreset


def mask_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, tokens: TokenInfo, mask_prob: float,
                mask_frac: float, random_frac: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(corrupted ids, labels with -100 where nothing is predicted), as DataCollatorForLanguageModeling."""
    special = torch.isin(input_ids, torch.tensor(tokens.special_ids, device=input_ids.device)) | (attention_mask == 0)
    chosen = torch.bernoulli(torch.full(input_ids.shape, mask_prob, device=input_ids.device)).bool() & ~special
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    u = torch.rand(input_ids.shape, device=input_ids.device)
    out = torch.where(chosen & (u < mask_frac), torch.full_like(input_ids, tokens.mask_id), input_ids)
    random_tok = torch.randint(len(tokens.special_ids), tokens.vocab_size, input_ids.shape, device=input_ids.device)
    out = torch.where(chosen & (u >= mask_frac) & (u < mask_frac + random_frac), random_tok, out)
    return out, labels


class HFElectra(nn.Module):
    def __init__(self, size: SizePreset, tokens: TokenInfo) -> None:
        super().__init__()
        self.tokens = tokens
        gh, gheads, gffn = generator_dims(size, None)
        self.generator = ElectraForMaskedLM(encoder_config(size, tokens, hidden=gh, heads=gheads, ffn=gffn))
        self.discriminator = ElectraForPreTraining(encoder_config(size, tokens))
        self.generator.electra.embeddings = self.discriminator.electra.embeddings  # shared, as the paper
        self.generator.generator_lm_head.weight = self.discriminator.electra.embeddings.word_embeddings.weight

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        masked, labels = mask_tokens(input_ids, attention_mask, self.tokens, 0.15, 0.85, 0.0)
        gen = self.generator(input_ids=masked, attention_mask=attention_mask, labels=labels)
        with torch.no_grad():  # Gumbel-max over the logits of every position
            u = torch.rand_like(gen.logits, dtype=torch.float32)
            sampled = (gen.logits.float() - torch.log(-torch.log(u + 1e-9) + 1e-9)).argmax(-1)
        disc_input = torch.where(labels != -100, sampled, input_ids)
        disc = self.discriminator(input_ids=disc_input, attention_mask=attention_mask,
                                  labels=(disc_input != input_ids).long())
        return gen.loss + 50.0 * disc.loss


class HFBert(nn.Module):
    def __init__(self, size: SizePreset, tokens: TokenInfo) -> None:
        super().__init__()
        self.tokens = tokens
        if size.embedding == size.hidden:
            self.mlm = BertForMaskedLM(BertConfig(
                vocab_size=tokens.vocab_size, hidden_size=size.hidden, num_hidden_layers=size.layers,
                num_attention_heads=size.heads, intermediate_size=size.ffn, max_position_embeddings=size.max_position,
                pad_token_id=tokens.pad_id, hidden_dropout_prob=size.dropout,
                attention_probs_dropout_prob=size.dropout))
        else:
            self.mlm = ElectraForMaskedLM(encoder_config(size, tokens))
        self.stock_class = type(self.mlm).__name__

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        masked, labels = mask_tokens(input_ids, attention_mask, self.tokens, 0.15, 0.8, 0.1)
        return self.mlm(input_ids=masked, attention_mask=attention_mask, labels=labels).loss


BASELINES = {"electra": HFElectra, "bert": HFBert}
