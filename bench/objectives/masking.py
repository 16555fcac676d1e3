"""Choosing and corrupting the positions a masked objective predicts.

Shapes never depend on the data (a fixed number of slots per row, unused ones weighted 0), so
the FLOPs of a step are known before it runs.
"""

from __future__ import annotations

import torch

from bench.backend import TokenInfo
from bench.objectives.draws import RowRandom, integers, uniform

__all__ = ["candidate_mask", "corrupt", "gather_positions", "n_predictions", "non_special_ids",
           "sample_mask_positions"]


def n_predictions(seq_len: int, mask_prob: float) -> int:
    """Masked positions per sequence: a fixed count, so the executed FLOPs of a step are deterministic."""
    return min(seq_len, max(1, int(round(mask_prob * seq_len))))


def candidate_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor, special_ids: tuple[int, ...]) -> torch.Tensor:
    """True where a position may be masked: a real token that is not [CLS]/[SEP]/[PAD]/[MASK]/[UNK]."""
    cand = attention_mask.bool()
    for special in special_ids:  # one comparison per id: no tensor built from a Python list (a host copy) per step
        cand = cand & (input_ids != special)
    return cand


def sample_mask_positions(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    special_ids: tuple[int, ...],
    n_pred: int,
    *,
    mask_prob: float | None = None,
    rng: RowRandom | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Choose `n_pred` distinct slots per row, uniformly among candidates; with `mask_prob`, only
    round(mask_prob x the row's candidates) of them (at least 1, at most n_pred) are masked.

    Returns (positions [B, n_pred] long, weights [B, n_pred] float; 1 = masked). Unused slots get
    weight 0 and stay unchanged, so the shapes (and the FLOPs) never depend on the data while a
    padded row still has 15% of its own tokens masked, as in the original ELECTRA code.
    """
    cand = candidate_mask(input_ids, attention_mask, special_ids)
    # random scores in [0, 1) for candidates, -1 for the rest: top-k picks candidates first
    scores = uniform(tuple(input_ids.shape), input_ids.device, rng).masked_fill(~cand, -1.0)
    positions = scores.topk(n_pred, dim=1).indices
    weights = cand.gather(1, positions).float()
    if mask_prob is not None:
        n_cand = cand.sum(dim=1, keepdim=True).float()
        k = torch.round(mask_prob * n_cand).clamp(min=1, max=n_pred)
        slot = torch.arange(n_pred, device=input_ids.device).unsqueeze(0)
        weights = weights * (slot < k).float()  # top-k is sorted: the first k slots are the masked ones
    return positions, weights


def corrupt(
    input_ids: torch.Tensor,
    positions: torch.Tensor,
    weights: torch.Tensor,
    tokens: TokenInfo,
    *,
    mask_frac: float,
    random_frac: float,
    rng: RowRandom | None = None,
) -> torch.Tensor:
    """Copy of `input_ids` with each chosen position -> [MASK] (mask_frac), a random token
    (random_frac, uniform over non-special ids) or unchanged (the rest). Weight-0 slots stay as they are."""
    u = uniform(tuple(positions.shape), input_ids.device, rng)
    original = input_ids.gather(1, positions)
    new = original.clone()
    new = torch.where(u < mask_frac, torch.full_like(new, tokens.mask_id), new)
    if random_frac > 0:
        specials = _specials(tokens)
        rand_tok = integers(tokens.vocab_size - len(specials), tuple(positions.shape), input_ids.device, rng)
        for special in specials:  # ascending: the r-th non-special id, without a pool of ids (no boolean index)
            rand_tok = rand_tok + (rand_tok >= special).long()
        is_rand = (u >= mask_frac) & (u < mask_frac + random_frac)
        new = torch.where(is_rand, rand_tok, new)
    new = torch.where(weights > 0, new, original)
    return input_ids.scatter(1, positions, new)


def _specials(tokens: TokenInfo) -> list[int]:
    """The distinct special ids inside the vocabulary, ascending."""
    return sorted({i for i in tokens.special_ids if 0 <= i < tokens.vocab_size})


def non_special_ids(tokens: TokenInfo, device: torch.device | str = "cpu") -> torch.Tensor:
    ids = torch.arange(tokens.vocab_size, device=device)
    return ids[~torch.isin(ids, torch.tensor(tokens.special_ids, device=device))]


def gather_positions(hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """hidden [B, L, H], positions [B, n] -> [B * n, H]: heads run on masked rows only."""
    b, n = positions.shape
    idx = positions.unsqueeze(-1).expand(b, n, hidden.size(-1))
    return hidden.gather(1, idx).reshape(b * n, hidden.size(-1))
