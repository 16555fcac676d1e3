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
    """Gumbel-max: a sample from softmax(logits / temperature) along the last dim, no gradient."""
    with torch.no_grad():
        noise = gumbel_noise(logits.shape, logits.device, rng=rng)
        return (logits.float() / max(temperature, 1e-9) + noise).argmax(dim=-1)


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
