"""Random draws that do not depend on how a global batch is split over processes.

Use `uniform` and `integers` (with the batch's `rng`) for every random choice of an
objective, so that 1 and N processes corrupt the same examples the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["RowRandom", "integers", "uniform"]


@dataclass(frozen=True)
class RowRandom:
    """Random draws that do not depend on how a global batch is split over processes.

    Every process holds a generator in the same state and draws for the whole global batch
    (`total` rows), then keeps its own rows [offset, offset + rows): so 1 process and N
    processes mask the same tokens and sample the same replacements for every example. The
    pretraining loop puts one in `batch["rng"]`; without it the helpers below use torch's
    global generator on the local rows.
    """

    generator: torch.Generator
    offset: int  # this process's first row of the global batch
    rows: int  # its rows
    total: int  # rows of the global batch

    def _global(self, shape: tuple[int, ...]) -> tuple[tuple[int, ...], slice]:
        per_row, rest = divmod(shape[0], self.rows)  # e.g. n_pred gathered slots per row
        if rest:
            raise ValueError(f"a draw of shape {shape} is not a whole number of rows per example ({self.rows} rows)")
        return (self.total * per_row, *shape[1:]), slice(self.offset * per_row, (self.offset + self.rows) * per_row)

    def rand(self, shape: tuple[int, ...], device: torch.device | str) -> torch.Tensor:
        full, mine = self._global(tuple(shape))
        return torch.rand(full, generator=self.generator, device=device)[mine]

    def randint(self, high: int, shape: tuple[int, ...], device: torch.device | str) -> torch.Tensor:
        full, mine = self._global(tuple(shape))
        return torch.randint(high, full, generator=self.generator, device=device)[mine]


def uniform(shape: tuple[int, ...], device: torch.device | str, rng: RowRandom | None = None) -> torch.Tensor:
    """U[0, 1) draws of `shape` (first dim: rows of this process's batch, or a multiple of them)."""
    return torch.rand(shape, device=device) if rng is None else rng.rand(tuple(shape), device)


def integers(high: int, shape: tuple[int, ...], device: torch.device | str, rng: RowRandom | None = None) -> torch.Tensor:
    return torch.randint(high, shape, device=device) if rng is None else rng.randint(high, tuple(shape), device)
