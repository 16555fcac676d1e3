"""Sampling replacements from a generator's logits, and labelling what was replaced."""

from __future__ import annotations

import torch

from bench.objectives.draws import RowRandom, uniform

__all__ = ["gumbel_noise", "gumbel_sample", "replace_and_label"]


def gumbel_noise(shape: torch.Size, device: torch.device | str, eps: float = 1e-9,
                 rng: RowRandom | None = None) -> torch.Tensor:
    u = uniform(tuple(shape), device, rng)
    return -torch.log(-torch.log(u + eps) + eps)


def gumbel_sample(logits: torch.Tensor, temperature: float = 1.0, rng: RowRandom | None = None) -> torch.Tensor:
    """A sample from softmax(logits / temperature) along the last dim, no gradient.

    The distribution of the Gumbel-max trick (the paper's code), drawn by inverse CDF: one uniform
    per row instead of one per vocabulary entry, so a counter-based draw (RowRandom) costs nothing
    next to the logits (hashing B x n_pred x V values would add ~3x today's sampling on a CPU).
    A token of probability 0 (a logit of -inf) is never drawn.
    """
    with torch.no_grad():
        scaled = logits.float() / max(temperature, 1e-9)
        weights = (scaled - scaled.amax(-1, keepdim=True)).exp()  # unnormalised softmax, largest entry 1
        cdf = weights.cumsum(-1)
        u = uniform((*logits.shape[:-1], 1), logits.device, rng)
        # the first entry whose cdf exceeds u x total; u <= 1 - 2^-24 keeps u x total below the total
        index = (cdf <= u * cdf[..., -1:]).sum(-1)
        return index.clamp(max=logits.size(-1) - 1)


def replace_and_label(
    input_ids: torch.Tensor, positions: torch.Tensor, weights: torch.Tensor, sampled: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Discriminator input (samples at the weighted chosen positions) and labels (1 = replaced).

    A sample equal to the original token is labelled real (0), as in the paper.
    """
    original = input_ids.gather(1, positions)
    new = torch.where(weights > 0, sampled.view_as(positions), original)  # weight-0 slots keep their token
    disc_input = input_ids.scatter(1, positions, new)
    return disc_input, (disc_input != input_ids).float()
