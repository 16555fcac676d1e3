"""All-Tokens MLM (Clark et al. 2020, section 3.2 and Table 5).

Replace MLM (`models/replace_mlm.py`: generator samples instead of [MASK]) whose encoder predicts
the identity of every input token, not only the masked-out ones, with the paper's explicit copy
mechanism: a sigmoid layer gives each position a copy probability D, and the output
distribution puts D on the input token plus (1 - D) times the MLM softmax:

    p(x_t) = D_t * 1[x_t = input_t] + (1 - D_t) * softmax(MLM logits_t)[x_t]

Loss = mean over the real tokens of -log p(original token) + the generator's MLM loss. The
paper's combination of BERT and ELECTRA: it closes most of the gap between them.

FLOPs: the MLM head runs at every position (B x L rows), plus the copy layer (hidden -> 1).
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from bench.backend import BackendOutput, FlopBreakdown, TokenInfo
from bench.objectives import flops, init_like_hf, weighted_mean
from bench.objectives.encoders import SizePreset
from bench.objectives.flops import EncoderShape
from bench.registry import register_model
from models.electra import ElectraBackend
from models.replace_mlm import ReplaceMLMBackend


def copy_mixture_log_prob(copy_logit: torch.Tensor, log_q: torch.Tensor, copies: torch.Tensor) -> torch.Tensor:
    """log p = log(D * copies + (1 - D) * q) with D = sigmoid(copy_logit), in log space (finite even
    when D rounds to 0 or 1): log D and log(1 - D) are log-sigmoids, the sum a log-add-exp."""
    not_copied = F.logsigmoid(-copy_logit) + log_q
    return torch.where(copies, torch.logaddexp(F.logsigmoid(copy_logit), not_copied), not_copied)


def mlm_head_all_positions(enc: EncoderShape, batch: int, seq: int, convention: str) -> float:
    """Forward FLOPs of the MLM head at every position.

    executed: the head on all B x L rows. paper: the script's output head (`embedding_flops(output=True)`)
    with output_frac = 1.0, as the script does for GPT, which also predicts every token, instead
    of the 15.625% of positions it charges a masked LM.
    """
    if flops.check_convention(convention) == "paper":
        return float(batch * replace(enc.paper(seq), output_frac=1.0).embedding_flops(output=True))
    return flops.mlm_head_forward(enc, batch, seq, seq, convention)  # n_pred = seq: every row


def copy_head_forward(enc: EncoderShape, batch: int, seq: int, convention: str) -> float:
    """The copy layer (hidden -> 1) at every position: 2h per token in both conventions (the paper
    convention charges it as the script charges its classifier's output layer, bias uncounted)."""
    flops.check_convention(convention)
    return 2.0 * batch * seq * enc.hidden


@register_model("all-tokens-mlm")
class AllTokensMLMBackend(ReplaceMLMBackend):
    name = "all-tokens-mlm"
    description = "All-Tokens MLM (ELECTRA paper 3.2): Replace MLM predicting every token, with a copy mechanism"

    def __init__(self, size: SizePreset, tokens: TokenInfo, **kwargs) -> None:
        super().__init__(size, tokens, **kwargs)  # the same options as replace-mlm, checked there
        self.copy_head = nn.Linear(self.discriminator.config.hidden_size, 1)  # D = sigmoid(copy_head(h))
        init_like_hf(self.copy_head, self.discriminator.config.initializer_range)

    def loss(self, batch: dict[str, torch.Tensor]) -> BackendOutput:
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        types = batch.get("token_type_ids")
        c = self.corrupt_with_generator(input_ids, attention_mask, batch.get("rng"), types)
        hidden = self.encode(c.inputs, attention_mask, types)
        rows = hidden.reshape(-1, hidden.size(-1))  # every position, padding included: fixed shapes, fixed FLOPs
        logits = self.mlm_head(rows).float()
        copy_logit = self.copy_head(rows).squeeze(-1).float()
        targets, seen = input_ids.reshape(-1), c.inputs.reshape(-1)

        lse = logits.logsumexp(-1)
        log_q = logits.gather(1, targets[:, None]).squeeze(1) - lse  # log softmax at the original token
        log_p = copy_mixture_log_prob(copy_logit, log_q, seen == targets)  # copying is right where input = original
        real = attention_mask.reshape(-1).float()  # padding is no token to predict
        main_loss = weighted_mean(-log_p, real)
        loss = c.gen_loss + main_loss

        with torch.no_grad():
            d = torch.sigmoid(copy_logit)
            # the mixture's argmax is either the input token or the softmax's argmax
            best_q, best = logits.max(-1)
            p_seen = d + (1 - d) * (logits.gather(1, seen[:, None]).squeeze(1) - lse).exp()
            p_best = (1 - d) * (best_q - lse).exp() + d * (best == seen).float()
            pred = torch.where(p_seen >= p_best, seen, best)
            acc = weighted_mean((pred == targets).float(), real)
            copy_prob = weighted_mean(d, real)
        return BackendOutput(loss, {
            "loss": loss.detach(), "gen_loss": c.gen_loss.detach(), "gen_acc": c.gen_acc,
            "mlm_loss": main_loss.detach(), "mlm_acc": acc, "copy_prob": copy_prob,
        })

    @staticmethod
    def analytic_step_flops(
        size: SizePreset, vocab_size: int, batch_size: int, seq_len: int, convention: str = "paper",
        *, mask_prob: float = 0.15, gen_hidden: int | None = None, gen_size: float | None = None, **_: object,
    ) -> FlopBreakdown:
        """ELECTRA's generator + the main encoder with its MLM head and copy layer at every position."""
        enc = flops.encoder_shape(size, vocab_size)
        b, s, c = batch_size, seq_len, convention
        return flops.training_step(c, {
            **ElectraBackend.generator_forward_flops(size, vocab_size, b, s, c, mask_prob, gen_hidden, gen_size),
            "encoder.embeddings": flops.embeddings_forward(enc, b, s, c),
            "encoder.blocks": flops.blocks_forward(enc, b, s, c),
            "mlm_head": mlm_head_all_positions(enc, b, s, c),
            "copy_head": copy_head_forward(enc, b, s, c),
        })
