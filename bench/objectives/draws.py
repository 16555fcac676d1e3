"""Random draws that do not depend on how a global batch is split over processes.

Use `uniform` and `integers` (with the batch's `rng`) for every random choice of an
objective, so that 1 and N processes corrupt the same examples the same way.

A `RowRandom` draw is counter-based: each value is a hash of (seed, draw number, the value's
index in the global batch), computed with integer tensor ops. So a process computes only its own
rows, the draws need no `torch.Generator` (which `torch.compile` cannot trace: a graph break at
every draw), never wait for the device, give the same bits on the CPU and a GPU, and the whole
random state is one integer (the draw counter) that a resume state carries to any device.
"""

from __future__ import annotations

import math

import torch

__all__ = ["RowRandom", "integers", "uniform"]

_M32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor | int, c: int) -> torch.Tensor | int:
    """x * c mod 2^32 for 0 <= x < 2^32, in 16-bit halves of c: no int64 product ever overflows."""
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & _M32


def _mix32(x: torch.Tensor | int) -> torch.Tensor | int:
    """lowbias32 (C. Wellons): a bijection of 32-bit values in which every input bit moves every output bit.
    Works on Python ints and on int64 tensors alike."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


class RowRandom:
    """Random draws that do not depend on how a global batch is split over processes.

    A draw of shape (rows x k, ...) stands for the draw of the whole global batch (`total` rows x
    k, ...); this process computes only its rows [offset, offset + rows) of it, each value a hash
    of (seed, draw number, global index): so 1 process and N processes mask the same tokens and
    sample the same replacements for every example. The pretraining loop puts one in
    `batch["rng"]`; without it the helpers below use torch's global generator on the local rows.

    `seed`: an int, or a `torch.Generator` (its initial seed: generators seeded alike draw alike).
    `draws` (a 0-dim int64 tensor on `device`) counts the draws made; it is the whole state.
    """

    def __init__(self, seed: int | torch.Generator, offset: int, rows: int, total: int,
                 device: torch.device | str = "cpu") -> None:
        seed = seed.initial_seed() if isinstance(seed, torch.Generator) else int(seed)
        self.seed, self.offset, self.rows, self.total = seed, offset, rows, total
        self._key = _mix32(_mix32(seed & _M32) ^ ((seed >> 32) & _M32))  # the seed's 64 bits in one 32-bit key
        self.draws = torch.zeros((), dtype=torch.long, device=device)  # a tensor: no recompile as it counts

    def state(self) -> torch.Tensor:
        """The draw counter, on the CPU (for a resume state: device-independent)."""
        return self.draws.detach().cpu().clone()

    def load_state(self, state: torch.Tensor) -> None:
        """Continue from `state()`, whatever device wrote it."""
        self.draws.copy_(state.reshape(()))

    def _bits(self, shape: tuple[int, ...], device: torch.device | str) -> torch.Tensor:
        """32 random bits (int64 values in [0, 2^32)) for each element of this process's part of a draw."""
        per_row, rest = divmod(shape[0], self.rows)  # e.g. n_pred gathered slots per row
        if rest:
            raise ValueError(f"a draw of shape {shape} is not a whole number of rows per example ({self.rows} rows)")
        first = self.offset * per_row * math.prod(shape[1:])  # global index of this process's first element
        index = torch.arange(first, first + math.prod(shape), device=device).view(shape)
        key = _mix32(self.draws.to(device) ^ self._key)  # one key per draw
        self.draws.add_(1)
        # two rounds, the key entering each: draws with different keys share no structure
        return _mix32((_mix32((index & _M32) ^ key) + ((index >> 32) ^ key)) & _M32)

    def rand(self, shape: tuple[int, ...], device: torch.device | str) -> torch.Tensor:
        """U[0, 1) float32 values: the top 24 bits, exactly representable."""
        return (self._bits(tuple(shape), device) >> 8).float() * 2.0 ** -24

    def randint(self, high: int, shape: tuple[int, ...], device: torch.device | str) -> torch.Tensor:
        """Integers in [0, high): (bits x high) >> 32, a bias below high / 2^32."""
        if not 0 < high <= 2 ** 31:
            raise ValueError(f"randint needs 0 < high <= 2^31, got {high}")
        return (self._bits(tuple(shape), device) * high) >> 32


def uniform(shape: tuple[int, ...], device: torch.device | str, rng: RowRandom | None = None) -> torch.Tensor:
    """U[0, 1) draws of `shape` (first dim: rows of this process's batch, or a multiple of them)."""
    return torch.rand(shape, device=device) if rng is None else rng.rand(tuple(shape), device)


def integers(high: int, shape: tuple[int, ...], device: torch.device | str, rng: RowRandom | None = None) -> torch.Tensor:
    return torch.randint(high, shape, device=device) if rng is None else rng.randint(high, tuple(shape), device)
