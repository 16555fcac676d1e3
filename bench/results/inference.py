"""Claims about objectives with the pretraining run as the unit of replication.

A score comes from a two-level design: each model is pretrained P times (independent init, data
order and masking), and each pretraining run is fine-tuned over S seeds. Fine-tuning seeds of one
checkpoint measure fine-tuning noise only; whether another pretraining run of the same objective
would do as well is the pretraining runs' spread. So:

- **Two objectives** (at least 2 pretraining runs a side): each run is summarised by the median of
  its fine-tuning scores (the paper's per-checkpoint statistic); the gap is the difference of the
  two sides' mean run medians, with a Welch t interval and test over the runs (df by
  Welch-Satterthwaite). For a balanced nested design this is the test a linear mixed model with a
  random pretraining-run effect makes of the objective (both reduce to the t test on run means), and
  under normal noise its false-claim rate is at most the nominal level at every number of runs,
  2 vs 2 included (`benchmarks/claim_calibration.py` measures it). A bootstrap over so few runs
  is anti-conservative, and an exact permutation test cannot reach 5% below 4 vs 4 runs.
- **Two checkpoints** (one pretraining run on either side): the same Welch interval over the
  fine-tuning seeds. It is a claim about these two checkpoints only, and the sentence says so.
- **Many comparisons** in one report are one family: p-values are Holm-adjusted together
  (`holm`), a verdict needs the adjusted p below 1 - level, and each sentence says over how many.
- **What would settle it**: `min_detectable_gap` is the smallest gap the design detects with 80%
  power; `runs_needed` the pretraining runs a side a given gap needs.

Pure functions over plain numbers; scipy for the t and noncentral t distributions.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Sequence

import numpy as np

LEVEL = 0.95
POWER = 0.8
OBJECTIVES, CHECKPOINTS = "pretraining runs", "fine-tuning seeds"


@dataclass(frozen=True)
class Comparison:
    """a vs b: the gap of mean unit scores, its Welch interval and test, and the design behind it.

    `unit` is what was replicated: OBJECTIVES (pretraining runs: a claim about objectives) or
    CHECKPOINTS (one pretraining run on a side: fine-tuning seeds of two checkpoints). `method` is
    "welch", or "too-few" when a side has fewer than 2 units (no spread: nothing can be claimed).
    """

    gap: float
    low: float
    high: float
    level: float
    p: float  # two-sided Welch p-value (nan for too-few)
    df: float
    unit: str
    runs_a: int  # pretraining runs on each side
    runs_b: int
    seeds_a: int  # fine-tuning runs on each side, all pretraining runs together
    seeds_b: int
    n_a: int  # units on each side (runs_* for OBJECTIVES, seeds_* for CHECKPOINTS)
    n_b: int
    sd_unit: float  # pooled standard deviation of one unit's score
    method: str
    p_adjusted: float = math.nan  # after Holm over the report's family (holm); p itself until then
    family: int = 1  # comparisons in that family

    @property
    def testable(self) -> bool:
        return self.method == "welch"

    @property
    def objectives(self) -> bool:
        """A claim about the objectives, not about two checkpoints."""
        return self.unit == OBJECTIVES

    @property
    def significant(self) -> bool:
        p = self.p if self.p_adjusted != self.p_adjusted else self.p_adjusted
        return self.testable and p < 1 - self.level

    @property
    def excludes_zero(self) -> bool:
        return self.testable and not (self.low <= 0.0 <= self.high)

    @property
    def verdict(self) -> str:
        """'better' | 'worse' | 'same' (not significant after correction) | 'unknown' (too few units)."""
        if not self.testable:
            return "unknown"
        if not self.significant:
            return "same"
        return "better" if self.gap > 0 else "worse"

    def min_detectable(self, power: float = POWER) -> float:
        """The smallest true gap this design detects with `power`, at the family's corrected level."""
        if not self.testable or not self.sd_unit == self.sd_unit:
            return math.nan
        return min_detectable_gap(self.sd_unit, self.n_a, self.n_b, alpha=(1 - self.level) / self.family,
                                  power=power)


def unit_scores(runs: Sequence[Sequence[float]]) -> tuple[list[float], str]:
    """The replicated units of one side: run medians when it has several runs, else the seeds of its one run."""
    runs = [list(map(float, r)) for r in runs if len(r)]
    if len(runs) >= 2:
        return [statistics.median(r) for r in runs], OBJECTIVES
    return (runs[0] if runs else []), CHECKPOINTS


def compare(a_runs: Sequence[Sequence[float]], b_runs: Sequence[Sequence[float]], *,
            level: float = LEVEL) -> Comparison:
    """a vs b from each side's fine-tuning scores grouped by pretraining run (a list of lists)."""
    from scipy import stats as sps

    ua, unit_a = unit_scores(a_runs)
    ub, unit_b = unit_scores(b_runs)
    if unit_a != unit_b:  # one side has a single pretraining run: only its checkpoint can be compared
        ua = [x for r in a_runs for x in r]
        ub = [x for r in b_runs for x in r]
    unit = OBJECTIVES if unit_a == unit_b == OBJECTIVES else CHECKPOINTS
    runs_a, runs_b = sum(1 for r in a_runs if len(r)), sum(1 for r in b_runs if len(r))
    seeds_a, seeds_b = sum(len(r) for r in a_runs), sum(len(r) for r in b_runs)
    na, nb = len(ua), len(ub)
    if na == 0 or nb == 0:
        raise ValueError("both sides need at least one score")
    gap = _clean(statistics.fmean(ua) - statistics.fmean(ub))
    if na < 2 or nb < 2:
        return Comparison(gap, gap, gap, level, math.nan, math.nan, unit, runs_a, runs_b, seeds_a, seeds_b, na, nb,
                          math.nan, "too-few")
    va, vb = statistics.variance(ua), statistics.variance(ub)
    se2 = va / na + vb / nb
    sd_unit = math.sqrt(((na - 1) * va + (nb - 1) * vb) / (na + nb - 2))
    if se2 == 0.0:  # no spread on either side: any gap is exact, none is a finding about noise
        p = 1.0 if gap == 0 else 0.0
        return Comparison(gap, gap, gap, level, p, math.inf, unit, runs_a, runs_b, seeds_a, seeds_b, na, nb, 0.0,
                          "welch", p)
    df = se2 ** 2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1)) if va or vb else na + nb - 2
    se = math.sqrt(se2)
    t = float(sps.t.ppf(1 - (1 - level) / 2, df))
    p = float(2 * sps.t.sf(abs(gap) / se, df))
    return Comparison(gap, _clean(gap - t * se), _clean(gap + t * se), level, p, df, unit, runs_a, runs_b,
                      seeds_a, seeds_b, na, nb, sd_unit, "welch", p)


def holm(ps: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (nan stays nan and is not counted in the family)."""
    idx = [i for i, p in enumerate(ps) if p == p]
    m = len(idx)
    out = [math.nan] * len(ps)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: ps[i])):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        out[i] = running
    return out


def adjust_family(comparisons: Sequence[Comparison]) -> list[Comparison]:
    """The comparisons of one report with their Holm-adjusted p-values and the family's size."""
    adjusted = holm([c.p if c.testable else math.nan for c in comparisons])
    m = sum(1 for c in comparisons if c.testable)
    return [replace(c, p_adjusted=q, family=max(m, 1)) if c.testable else replace(c, family=max(m, 1))
            for c, q in zip(comparisons, adjusted)]


# --- design: power and the runs a gap needs ----------------------------------------------------


@lru_cache(maxsize=64)
def median_variance_factor(n: int) -> float:
    """Var(median of n iid N(0, 1)): exactly 1/n for n <= 2, else by a seeded simulation (200,000 draws)."""
    if n <= 2:
        return 1.0 / n
    rng = np.random.default_rng(0)
    return float(np.var(np.median(rng.standard_normal((200_000, n)), axis=1)))


def unit_sd(sd_pretrain: float, sd_finetune: float, seeds: int) -> float:
    """The standard deviation of one pretraining run's median over `seeds` fine-tuning seeds."""
    return math.sqrt(sd_pretrain ** 2 + median_variance_factor(seeds) * sd_finetune ** 2)


def power(gap: float, sd: float, n_a: int, n_b: int, *, alpha: float = 1 - LEVEL) -> float:
    """Probability that the two-sided t test over n_a vs n_b units (sd each) finds a true `gap`."""
    from scipy import stats as sps

    if n_a < 2 or n_b < 2 or sd <= 0:
        return math.nan
    df = n_a + n_b - 2
    nc = gap / (sd * math.sqrt(1 / n_a + 1 / n_b))
    t = sps.t.ppf(1 - alpha / 2, df)
    return float(sps.nct.sf(t, df, nc) + sps.nct.cdf(-t, df, nc))


def min_detectable_gap(sd: float, n_a: int, n_b: int, *, alpha: float = 1 - LEVEL, power: float = POWER) -> float:
    """The smallest gap found with `power` by the t test over n_a vs n_b units (bisection on the power)."""
    if n_a < 2 or n_b < 2 or not sd > 0:
        return math.nan
    lo, hi = 0.0, sd
    while _power(hi, sd, n_a, n_b, alpha) < power:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _power(mid, sd, n_a, n_b, alpha) < power else (lo, mid)
    return hi


def _power(gap: float, sd: float, n_a: int, n_b: int, alpha: float) -> float:
    return power(gap, sd, n_a, n_b, alpha=alpha)


def runs_needed(gap: float, sd_pretrain: float, sd_finetune: float, seeds: int, *, alpha: float = 1 - LEVEL,
                power: float = POWER, most: int = 1000) -> int | None:
    """Pretraining runs a side (each fine-tuned over `seeds`) for the t test to find `gap` with `power`."""
    sd = unit_sd(sd_pretrain, sd_finetune, seeds)
    for n in range(2, most + 1):
        if _power(gap, sd, n, n, alpha) >= power:
            return n
    return None


@dataclass(frozen=True)
class Variance:
    """Standard deviations of a score between pretraining runs and between fine-tuning seeds of one run."""

    sd_pretrain: float
    sd_finetune: float
    source: str  # where they came from: the store's replicated runs, or the documented defaults
    groups: int = 0  # model configurations with >= 2 pretraining runs behind the estimate


# Measured on this project's tiny preset (SST-2 dev accuracy, 1.5e13 FLOPs, 20,000 fine-tuning examples, BERT,
# 3 pretraining runs x 5 seeds: docs/results/variance.md): what `bench plan --power` and
# benchmarks/claim_calibration.py assume without a store. The between-run sd is that measurement's 95% upper
# bound (its estimate was 0 on 2 degrees of freedom), so power is not overstated.
DEFAULT_VARIANCE = Variance(0.0068, 0.0070, "defaults measured on tiny BERT, SST-2: docs/results/variance.md")


def variance_components(groups: Sequence[Sequence[Sequence[float]]]) -> Variance | None:
    """Method-of-moments estimates from configurations with >= 2 pretraining runs of >= 2 seeds each.

    sd_finetune: the pooled within-run standard deviation; sd_pretrain: what the spread of run medians
    leaves after the fine-tuning noise a median of that many seeds carries (0 if none).
    """
    within, within_df, between, between_df, factors, used = 0.0, 0, 0.0, 0, 0.0, 0
    for runs in groups:
        runs = [list(map(float, r)) for r in runs if len(r) >= 2]
        if len(runs) < 2:
            continue
        used += 1
        for r in runs:
            within += statistics.variance(r) * (len(r) - 1)
            within_df += len(r) - 1
        medians = [statistics.median(r) for r in runs]
        s = statistics.median(len(r) for r in runs)
        between += statistics.variance(medians) * (len(runs) - 1)
        between_df += len(runs) - 1
        factors += median_variance_factor(int(s)) * (len(runs) - 1)  # the seed noise a run median carries
    if not used:
        return None
    sf2 = within / within_df
    sp2 = max(0.0, (between - factors * sf2) / between_df)
    return Variance(math.sqrt(sp2), math.sqrt(sf2), f"{used} replicated configuration(s) in the store", used)


def _clean(x: float) -> float:
    return round(float(x), 12)
