"""Pretraining budgets: FLOPs (`2e14`), a share of a paper run (`electra-small@6.25%`), or time (`20min`)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from bench.errors import ConfigError

# The paper's full pretraining runs (ELECTRA paper, Table 1 / Table 8): model, size, steps, batch, seq.
REFERENCE_RUNS: dict[str, tuple[str, str, int, int, int]] = {
    "electra-small": ("electra", "small", 1_000_000, 128, 128),
    "bert-small": ("bert", "small", 1_450_000, 128, 128),
    "electra-base": ("electra", "base", 766_000, 256, 512),
    "bert-base": ("bert", "base", 1_000_000, 256, 512),
}
_TIME_UNITS = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "hr": 3600}


@dataclass(frozen=True)
class Budget:
    """`kind` is "flops" (value in FLOPs, in `convention`) or "time" (value in seconds)."""

    kind: str
    value: float
    text: str

    @property
    def is_time(self) -> bool:
        return self.kind == "time"


def reference_flops(name: str, convention: str = "paper") -> float:
    """Total training FLOPs of one of the paper's reference runs, under `convention`."""
    from bench.train.flops import flops_report

    model, size, steps, batch, seq = REFERENCE_RUNS[name]
    return float(flops_report(model, size, steps=steps, batch=batch, seq=seq, convention=convention,
                              inference=False)["total"])


def parse_budget(value: str | float | int, *, convention: str = "paper", where: str = "--budget") -> Budget:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(f"{where}: a budget must be a positive, finite number of FLOPs, got {value}. Give FLOPs "
                              f"(2e14), a share of a paper run (electra-small@6.25%), or wall-clock (20min).")
        return Budget("flops", float(value), f"{float(value):.3g}")
    text = str(value).strip()
    try:
        return parse_budget(float(text), convention=convention, where=where)
    except ValueError:
        pass
    m = re.fullmatch(r"([a-z]+-[a-z]+)@([\d.]+)%", text.lower())
    if m:
        name, pct = m.group(1), float(m.group(2))
        if name not in REFERENCE_RUNS:
            raise ConfigError(f"{where}: unknown reference run {name!r} in {text!r}; "
                              f"known: {', '.join(REFERENCE_RUNS)} (e.g. electra-small@6.25%).")
        if not 0 < pct <= 1000:
            raise ConfigError(f"{where}: percentage {pct}% in {text!r} must be in (0, 1000].")
        return Budget("flops", reference_flops(name, convention) * pct / 100, text)
    m = re.fullmatch(r"([\d.]+)\s*([a-z]+)", text.lower())
    if m and m.group(2) in _TIME_UNITS:
        seconds = float(m.group(1)) * _TIME_UNITS[m.group(2)]
        if seconds <= 0:
            raise ConfigError(f"{where}: a time budget must be positive, got {text!r}.")
        return Budget("time", seconds, text)
    raise ConfigError(
        f"{where}: cannot read budget {text!r}. Give FLOPs (2e14), a share of a paper run "
        f"({', '.join(REFERENCE_RUNS)}, e.g. electra-small@6.25%), or wall-clock (90s, 20min, 2h)."
    )
