"""Statistics for the efficiency claim: a bootstrap interval of the median gap, compute speedups, sentences.

Pure functions over plain sequences of floats, deterministic. With few seeds (the usual case:
3 to 5) the bootstrap distribution of a median is computed exactly, by enumerating every
resample as a multiset with its multinomial weight, so a test can compute it by hand; with
many seeds it falls back to a seeded Monte-Carlo bootstrap.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from itertools import combinations_with_replacement
from typing import Sequence

import numpy as np

EXACT_MAX_MULTISETS = 50_000  # C(2n-1, n) resamples per side: exact up to 9 seeds
DEFAULT_RESAMPLES = 20_000
DEFAULT_SEED = 0


@dataclass(frozen=True)
class GapCI:
    """The gap median(a) - median(b) with a percentile-bootstrap confidence interval over seeds."""

    gap: float
    low: float
    high: float
    level: float
    n_a: int
    n_b: int
    p_greater: float  # share of bootstrap resamples in which a's median exceeds b's
    p_less: float  # ... in which b's median exceeds a's (ties count in neither)
    method: str  # "exact" | "monte-carlo" | "single-seed" | "range" (no per-seed scores: min/max only)

    @property
    def includes_zero(self) -> bool:
        return self.low <= 0.0 <= self.high

    @property
    def judgeable(self) -> bool:
        """One seed on either side gives no spread, so no interval worth the name."""
        return self.method != "single-seed"


@dataclass(frozen=True)
class Speedup:
    """How much compute model A needs to reach model B's best median score."""

    target: float  # B's best median score
    b_flops: float  # the FLOPs at which B reached its best
    a_flops: float | None  # FLOPs A needs (None: A's curve never reaches the target)
    at_first_point: bool  # A was already there at its first checkpoint: a_flops is an upper bound

    @property
    def ratio(self) -> float | None:
        """b_flops / a_flops: above 1, A needs less compute than B spent on its best."""
        return None if self.a_flops is None or self.a_flops <= 0 else self.b_flops / self.a_flops


# --- bootstrap ------------------------------------------------------------------------------


def median_distribution(values: Sequence[float]) -> dict[float, Fraction]:
    """Exact bootstrap distribution of the median: every size-n resample with replacement, weighted.

    A multiset with counts c_1..c_n arises from n! / (c_1! ... c_n!) ordered resamples out of n^n.
    """
    xs = [float(v) for v in values]
    n = len(xs)
    if n == 0:
        raise ValueError("no values to resample")
    total = n ** n
    fact = [math.factorial(k) for k in range(n + 1)]
    dist: Counter[float] = Counter()
    for combo in combinations_with_replacement(range(n), n):
        weight = fact[n]
        for c in Counter(combo).values():
            weight //= fact[c]
        dist[_clean(statistics.median(xs[i] for i in combo))] += weight
    return {v: Fraction(w, total) for v, w in sorted(dist.items())}


def _multisets(n: int) -> int:
    return math.comb(2 * n - 1, n)


def _interval(dist: dict[float, Fraction], level: float) -> tuple[float, float]:
    """Percentile interval of a discrete distribution, symmetric under negation.

    low = the smallest g with P(G <= g) >= alpha/2; high = the largest g with P(G >= g) >= alpha/2.
    """
    tail = (1 - Fraction(str(level))) / 2
    values = sorted(dist)
    acc, low = Fraction(0), values[-1]
    for v in values:
        acc += dist[v]
        if acc >= tail:
            low = v
            break
    acc, high = Fraction(0), values[0]
    for v in reversed(values):
        acc += dist[v]
        if acc >= tail:
            high = v
            break
    return low, high


def gap_distribution(a: Sequence[float], b: Sequence[float]) -> dict[float, Fraction]:
    """Exact bootstrap distribution of median(a*) - median(b*), a and b resampled independently."""
    da, db = median_distribution(a), median_distribution(b)
    out: dict[float, Fraction] = {}
    for va, pa in da.items():
        for vb, pb in db.items():
            g = _clean(va - vb)
            out[g] = out.get(g, Fraction(0)) + pa * pb
    return dict(sorted(out.items()))


def bootstrap_median_gap(a: Sequence[float], b: Sequence[float], *, level: float = 0.95,
                         n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> GapCI:
    """Percentile-bootstrap CI of median(a) - median(b), resampling each model's seeds independently.

    Exact (all resamples enumerated) when both sides have at most 9 seeds; otherwise Monte Carlo
    with `n_resamples` draws from numpy's generator seeded with `seed`, so the result is repeatable.
    """
    a, b = [float(x) for x in a], [float(x) for x in b]
    if not a or not b:
        raise ValueError("both sides need at least one score")
    gap = _clean(statistics.median(a) - statistics.median(b))
    if len(a) < 2 or len(b) < 2:
        return GapCI(gap, gap, gap, level, len(a), len(b), float(gap > 0), float(gap < 0), "single-seed")
    if _multisets(len(a)) <= EXACT_MAX_MULTISETS and _multisets(len(b)) <= EXACT_MAX_MULTISETS:
        dist = gap_distribution(a, b)
        low, high = _interval(dist, level)
        p_greater = float(sum(p for g, p in dist.items() if g > 0))
        p_less = float(sum(p for g, p in dist.items() if g < 0))
        return GapCI(gap, low, high, level, len(a), len(b), p_greater, p_less, "exact")
    rng = np.random.default_rng(seed)
    ma = np.median(rng.choice(np.asarray(a), size=(n_resamples, len(a)), replace=True), axis=1)
    mb = np.median(rng.choice(np.asarray(b), size=(n_resamples, len(b)), replace=True), axis=1)
    gaps = ma - mb
    tail = (1 - level) / 2
    low = float(np.quantile(gaps, tail, method="inverted_cdf"))
    high = float(-np.quantile(-gaps, tail, method="inverted_cdf"))  # mirror: same rule as the exact path
    return GapCI(gap, _clean(low), _clean(high), level, len(a), len(b), float(np.mean(gaps > 0)),
                 float(np.mean(gaps < 0)), "monte-carlo")


def range_gap(median_a: float, min_a: float, max_a: float, n_a: int, median_b: float, min_b: float,
              max_b: float, n_b: int) -> GapCI:
    """Without per-seed scores: the interval of all differences between the two seed ranges.

    It includes 0 exactly when the ranges overlap, and equals the exact bootstrap interval for 2 seeds each.
    """
    gap = _clean(median_a - median_b)
    if n_a < 2 or n_b < 2:
        return GapCI(gap, gap, gap, 1.0, n_a, n_b, float(gap > 0), float(gap < 0), "single-seed")
    return GapCI(gap, _clean(min_a - max_b), _clean(max_a - min_b), 1.0, n_a, n_b, math.nan, math.nan, "range")


def _clean(x: float) -> float:
    """Round away float noise (0.84 - 0.80 = 0.039999...) so equal gaps compare equal."""
    return round(float(x), 12)


# --- compute curves ---------------------------------------------------------------------------


def _curve(flops: Sequence[float], scores: Sequence[float]) -> list[tuple[float, float]]:
    """(FLOPs, score) points with positive FLOPs, sorted by FLOPs (log scale needs FLOPs > 0)."""
    if len(flops) != len(scores):
        raise ValueError("flops and scores differ in length")
    return sorted((float(f), float(s)) for f, s in zip(flops, scores) if f and f > 0 and s == s)


def flops_to_reach(flops: Sequence[float], scores: Sequence[float], target: float) -> tuple[float | None, bool]:
    """FLOPs at which a curve first reaches `target`, interpolating linearly in log10(FLOPs).

    Returns (flops, at_first_point); (None, False) if the curve never reaches the target.
    """
    pts = _curve(flops, scores)
    if not pts:
        return None, False
    if pts[0][1] >= target:
        return pts[0][0], True  # no point below the first to interpolate from
    for (f0, s0), (f1, s1) in zip(pts, pts[1:]):
        if s1 >= target:
            t = (target - s0) / (s1 - s0)  # s0 < target <= s1, so s1 > s0
            return 10 ** (math.log10(f0) + t * (math.log10(f1) - math.log10(f0))), False
    return None, False


def best_point(flops: Sequence[float], scores: Sequence[float]) -> tuple[float, float]:
    """(FLOPs, score) of a curve's best median score; the cheapest point among ties."""
    pts = _curve(flops, scores)
    if not pts:
        raise ValueError("a curve needs at least one point with positive FLOPs")
    best = max(s for _, s in pts)
    return next((f, s) for f, s in pts if s == best)


def speedup(a_flops: Sequence[float], a_scores: Sequence[float], b_flops: Sequence[float],
            b_scores: Sequence[float]) -> Speedup:
    """The compute A needs to reach B's best median score, against what B spent to get there."""
    fb, target = best_point(b_flops, b_scores)
    fa, first = flops_to_reach(a_flops, a_scores, target)
    return Speedup(target=target, b_flops=fb, a_flops=fa, at_first_point=first)


# --- sentences ----------------------------------------------------------------------------------


def fmt_flops(x: float) -> str:
    return f"{x:.2g}"


def ratio_phrase(ratio: float) -> str:
    """4.0 -> '1/4 of the compute'; 0.5 -> '2x the compute'."""
    if ratio >= 1:
        return f"1/{ratio:.2g} of the compute"
    return f"{1 / ratio:.2g}x the compute"


def gap_phrase(ci: GapCI) -> str:
    """'median gap +0.0480 (95% CI +0.0310 to +0.0620, 3 vs 3 seeds)'."""
    if not ci.judgeable:
        return f"median gap {ci.gap:+.4f} ({ci.n_a} vs {ci.n_b} seeds: one seed gives no spread to judge by)"
    if ci.method == "range":
        return (f"median gap {ci.gap:+.4f} (differences between seed ranges {ci.low:+.4f} to {ci.high:+.4f}, "
                f"{ci.n_a} vs {ci.n_b} seeds)")
    return (f"median gap {ci.gap:+.4f} ({ci.level:.0%} CI {ci.low:+.4f} to {ci.high:+.4f}, "
            f"{ci.n_a} vs {ci.n_b} seeds)")


def verdict(ci: GapCI) -> str:
    """'better' | 'worse' | 'same' (the interval includes 0) | 'unknown' (one seed)."""
    if not ci.judgeable:
        return "unknown"
    if ci.includes_zero:
        return "same"
    return "better" if ci.low > 0 else "worse"


def speedup_phrase(a: str, b: str, s: Speedup) -> str:
    """What A needs to reach B's best, in the paper's terms."""
    if s.a_flops is None:
        return f"{a} never reaches {b}'s best score ({s.target:.4f}) within its budget"
    ratio = s.ratio or 0.0
    if s.at_first_point:
        return (f"{a} already matches {b}'s best score ({s.target:.4f}, reached with {fmt_flops(s.b_flops)} FLOPs) "
                f"at its first checkpoint ({fmt_flops(s.a_flops)} FLOPs), i.e. with at most "
                f"{ratio_phrase(ratio)}")
    return (f"{a} reaches {b}'s best score ({s.target:.4f}, reached with {fmt_flops(s.b_flops)} FLOPs) with "
            f"{fmt_flops(s.a_flops)} FLOPs, i.e. {ratio_phrase(ratio)}")


def _ahead(who: str, share: float) -> str:
    return "" if math.isnan(share) else f" ({who} ahead in {share:.0%} of bootstrap resamples)"


def claim_sentence(a: str, b: str, ci: GapCI, *, where: str, at: str = "at matched FLOPs",
                   claim: str | None = None, a_to_b: Speedup | None = None, b_to_a: Speedup | None = None) -> str:
    """One plain sentence: does A beat B at matched compute here, how sure, and at what compute ratio.

    `where` names the setting, e.g. "sst2 (tiny, 3e+13 FLOPs)"; `at` how the two were matched;
    `claim` what is being tested (default "the claim that A beats B").
    """
    v = verdict(ci)
    claim = claim or f"the claim that {a} beats {b}"
    head = f"{where}: {a} vs {b} {at}: {gap_phrase(ci)}"
    if v == "unknown":
        body = f", so this run cannot judge {claim}"
    elif v == "same":
        body = (f"; the interval includes 0, so there is no measurable difference at this scale and {claim} "
                f"is neither supported nor refuted")
    elif v == "better":
        body = (f"; the interval excludes 0{_ahead(a, ci.p_greater)}, "
                f"so {claim} holds at this scale")
    else:
        body = (f"; the interval excludes 0{_ahead(b, ci.p_less)}, "
                f"so {claim} does not hold at this scale: {b} is better")
    if v in ("better", "worse") and min(ci.n_a, ci.n_b) < 3:
        body += f" (with {min(ci.n_a, ci.n_b)} seeds the interval is rough: more seeds would firm it up)"
    if a_to_b and b_to_a and a_to_b.at_first_point and b_to_a.at_first_point:
        extra = ["both reach the other's best score at their first checkpoint, so the curves cannot tell their "
                 f"compute apart"]
    else:
        extra = [speedup_phrase(x, y, s) for x, y, s in ((a, b, a_to_b), (b, a, b_to_a)) if s is not None]
    tail = ("; " + "; ".join(extra)) if extra else ""
    return head + body + tail + "."
