"""Checks of a backend's keyword options: errors that name the option and what it may be.

The harness turns a `TypeError` or `ValueError` raised by a backend's constructor while
options were given into a configuration error naming the `[models.NAME]` table.
"""

from __future__ import annotations

from typing import Any

__all__ = ["check_mask_prob", "check_options"]


def check_options(backend: str, options: dict[str, Any], known: tuple[str, ...]) -> None:
    """Unknown keyword options are a TypeError that names them (the lead maps it to a config error)."""
    if options:
        names = ", ".join(repr(k) for k in sorted(options))
        allowed = ", ".join(known) if known else "none"
        raise TypeError(f"backend {backend!r}: unknown option(s) {names}; its options are: {allowed}")


def check_mask_prob(mask_prob: float) -> None:
    if not 0.0 < mask_prob < 1.0:
        raise ValueError(f"mask_prob must be in (0, 1), got {mask_prob}")
