"""Statistics for the efficiency claim: a bootstrap interval of the median gap, compute speedups, sentences.

Pure functions over plain sequences of floats, deterministic. With few seeds (the usual case:
3 to 5) the bootstrap distribution of a median is computed exactly, by enumerating every
resample as a multiset with its multinomial weight, so a test can compute it by hand; with
many seeds it falls back to a seeded Monte-Carlo bootstrap.

Compute speed-ups ("A reaches B's best score with 1/4 of the compute") get an interval too:
`bootstrap_speedups` resamples each checkpoint's per-seed scores with replacement, recomputes
both curves' medians, re-runs `best_point` / `flops_to_reach` and collects the ratio B's cost /
A's cost, in FLOPs and in wall-clock seconds (seeded Monte Carlo, SPEEDUP_RESAMPLES draws, so
the same scores always give the same interval). Two conventions inside a resample: A never
reaching B's best counts as ratio 0 (A would need more than its whole budget), and A already
there at its first checkpoint counts the first checkpoint's cost, an upper bound on what A
needs, so that ratio is a lower bound (conservative; when at least alpha/2 of the resamples
are such lower bounds the interval's upper end is open). `speedup_withheld` says when a speed-up
must not be claimed: one seed per checkpoint, or an interval that spans 1x.

Claims themselves take the pretraining run as their unit (bench.results.inference); the median-gap
bootstrap here is the method earlier reports used, kept for benchmarks/claim_calibration.py to show
its coverage beside the shipped method's. The compute curves' points are per-run medians there.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from itertools import combinations_with_replacement
from typing import Any, Sequence

import numpy as np

EXACT_MAX_MULTISETS = 50_000  # C(2n-1, n) resamples per side: exact up to 9 seeds
DEFAULT_RESAMPLES = 20_000
DEFAULT_SEED = 0
SPEEDUP_RESAMPLES = 2_000  # Monte-Carlo draws for a speed-up's interval: each re-runs both curves' searches
PAPER_SEEDS = 10  # the ELECTRA paper reports the median of 10 fine-tuning runs


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
    # the same search run over wall-clock seconds per checkpoint fills b_flops / a_flops with seconds

    @property
    def ratio(self) -> float | None:
        """b_flops / a_flops: above 1, A needs less compute than B spent on its best."""
        return None if self.a_flops is None or self.a_flops <= 0 else self.b_flops / self.a_flops


@dataclass(frozen=True)
class Curve:
    """A model's compute curve with its per-seed scores: one entry per checkpoint, in order of FLOPs."""

    flops: tuple[float, ...]
    seeds: tuple[tuple[float, ...], ...]  # each checkpoint's per-seed scores
    wall: tuple[float, ...] | None = None  # wall-clock seconds of pretraining at each checkpoint (None: unknown)

    @staticmethod
    def of(flops: Sequence[float], seeds: Sequence[Sequence[float]],
           wall: Sequence[float | None] | None = None) -> Curve:
        """Checkpoints with positive FLOPs and at least one score, sorted; wall kept only if every point has one."""
        if len(flops) != len(seeds) or (wall is not None and len(wall) != len(flops)):
            raise ValueError("flops, seeds and wall differ in length")
        walls = list(wall) if wall is not None else [None] * len(flops)
        pts = sorted((float(f), tuple(float(x) for x in s if x == x), w) for f, s, w in zip(flops, seeds, walls)
                     if f and f > 0 and any(x == x for x in s))
        known = all(w is not None and w == w and w > 0 for _, _, w in pts)  # log interpolation needs seconds > 0
        return Curve(tuple(f for f, _, _ in pts), tuple(s for _, s, _ in pts),
                     tuple(float(w) for _, _, w in pts) if known and pts else None)

    @property
    def medians(self) -> list[float]:
        return [_clean(statistics.median(s)) for s in self.seeds]

    @property
    def min_seeds(self) -> int:
        return min((len(s) for s in self.seeds), default=0)


@dataclass(frozen=True)
class SpeedupCI:
    """A's compute to reach B's best median score, with a percentile-bootstrap interval over seeds.

    `point` comes from the medians (as `speedup` computes it); low/high are the interval of the ratio
    B's cost / A's cost over resamples, where 0 stands for "A never reaches it" and a resample in which
    A is there at its first checkpoint contributes a lower bound. `wall*`: the same in wall-clock seconds.
    """

    point: Speedup
    low: float
    high: float
    high_open: bool  # >= alpha/2 of resamples are lower bounds (A there at its first point): the top is unknown
    p_never: float  # share of resamples in which A never reaches B's best
    p_first: float  # share in which A is already there at its first checkpoint
    wall: Speedup | None  # None: no wall-clock per checkpoint on one of the curves
    wall_low: float
    wall_high: float
    level: float
    n_resamples: int
    seeds_a: int  # fewest seeds at any checkpoint of A's curve
    seeds_b: int
    method: str  # "monte-carlo" | "single-seed" (a checkpoint with one seed: no spread) | "no-seeds" (medians only)

    @property
    def ratio(self) -> float:
        """The point ratio with "never reaches" as 0, the interval's convention."""
        return self.point.ratio or 0.0

    @property
    def wall_ratio(self) -> float | None:
        return None if self.wall is None else (self.wall.ratio or 0.0)


# --- bootstrap ------------------------------------------------------------------------------


def median_distribution(values: Sequence[float]) -> dict[float, Fraction]:
    """Exact bootstrap distribution of the median: every size-n resample with replacement, weighted.

    A multiset with counts c_1..c_n arises from n! / (c_1! ... c_n!) ordered resamples out of n^n.
    """
    weights, total = _median_weights(tuple(float(v) for v in values))
    return {v: Fraction(w, total) for v, w in weights.items()}


@lru_cache(maxsize=16)
def _multiset_weights(n: int) -> tuple[tuple[tuple[int, ...], int], ...]:
    """Every multiset of n indices out of n (as a sorted index tuple) with its count of ordered resamples."""
    fact = [math.factorial(k) for k in range(n + 1)]
    out = []
    for combo in combinations_with_replacement(range(n), n):
        weight = fact[n]
        for c in Counter(combo).values():
            weight //= fact[c]
        out.append((combo, weight))
    return tuple(out)


@lru_cache(maxsize=4096)
def _median_weights(xs: tuple[float, ...]) -> tuple[dict[float, int], int]:
    """median_distribution in integers: {median: ordered resamples giving it}, out of n^n. Cached: a report
    compares each model's seeds with several others'."""
    n = len(xs)
    if n == 0:
        raise ValueError("no values to resample")
    dist: Counter[float] = Counter()
    for combo, weight in _multiset_weights(n):
        dist[_clean(statistics.median(xs[i] for i in combo))] += weight
    return dict(sorted(dist.items())), n ** n


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
    (da, ta), (db, tb) = _median_weights(tuple(float(v) for v in a)), _median_weights(tuple(float(v) for v in b))
    out: dict[float, int] = {}
    for va, wa in da.items():  # integer weights over ta * tb: exact, and much faster than Fractions
        for vb, wb in db.items():
            g = _clean(va - vb)
            out[g] = out.get(g, 0) + wa * wb
    return {g: Fraction(w, ta * tb) for g, w in sorted(out.items())}


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


def _ratio(s: Speedup) -> float:
    return s.ratio or 0.0  # never reaching: the conservative 0


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval with the same rule as the gap's: low and high mirror each other."""
    tail = (1 - level) / 2
    return (_clean(np.quantile(values, tail, method="inverted_cdf")),
            _clean(-np.quantile(-values, tail, method="inverted_cdf")))


def _resampled_medians(rng: np.random.Generator, curve: Curve, n: int) -> np.ndarray:
    """(n, checkpoints) medians, each checkpoint's seeds drawn with replacement independently."""
    cols = []
    for s in curve.seeds:
        xs = np.asarray(s, dtype=float)
        cols.append(np.round(_row_medians(xs[rng.integers(0, len(xs), size=(n, len(xs)))]), 12))  # as _clean
    return np.stack(cols, axis=1)


def _row_medians(x: np.ndarray) -> np.ndarray:
    """np.median(x, axis=1), the same numbers (the middle value, or the mean of the two middle ones) by one sort:
    several times faster on the short rows of a bootstrap. A row with a NaN goes to np.median, which makes it NaN."""
    if np.isnan(x).any():
        return np.median(x, axis=1)
    s = np.sort(x, axis=1)
    h = s.shape[1] // 2
    return s[:, h] if s.shape[1] % 2 else (s[:, h - 1] + s[:, h]) / 2


@dataclass(frozen=True)
class _Searches:
    """`speedup` run on many rows of medians at once: per row B's best, its cost and A's cost to reach it."""

    target: np.ndarray
    b_cost: np.ndarray
    a_cost: np.ndarray  # NaN where A never reaches the target
    first: np.ndarray  # A there at its first checkpoint (a_cost is then an upper bound)
    b_wall: np.ndarray | None
    a_wall: np.ndarray | None

    def ratios(self, wall: bool = False) -> np.ndarray:
        """B's cost / A's cost per row, 0 where A never reaches B's best."""
        b, a = (self.b_wall, self.a_wall) if wall else (self.b_cost, self.a_cost)
        return np.where(np.isnan(a), 0.0, b / np.where(np.isnan(a), 1.0, a))  # type: ignore[operator]

    def speedup(self, row: int, wall: bool = False) -> Speedup:
        b, a = (self.b_wall, self.a_wall) if wall else (self.b_cost, self.a_cost)
        cost = float(a[row])  # type: ignore[index]
        return Speedup(float(self.target[row]), float(b[row]), None if math.isnan(cost) else cost,  # type: ignore
                       bool(self.first[row]))


def _search(x: Curve, mx: np.ndarray, y: Curve, my: np.ndarray) -> _Searches:
    """Vectorised best_point / flops_to_reach (same rules: cheapest of tied bests, first crossing, linear in
    log cost) over rows of medians; wall-clock reuses each row's crossing, the checkpoints being in step order."""
    n = mx.shape[0]
    rows = np.arange(n)
    target = my.max(axis=1)
    ib = np.argmax(my == target[:, None], axis=1)  # the cheapest point among ties
    hit = mx >= target[:, None]
    reached, j = hit.any(axis=1), np.argmax(hit, axis=1)
    first = reached & (j == 0)
    j0 = np.maximum(j - 1, 0)
    s0, s1 = mx[rows, j0], mx[rows, j]
    with np.errstate(divide="ignore", invalid="ignore"):  # rows where j == 0 do not interpolate
        t = np.where(first | ~reached, 0.0, (target - s0) / (s1 - s0))

    def cost(xs: tuple[float, ...]) -> np.ndarray:
        lx = np.log10(np.asarray(xs, dtype=float))
        return np.where(reached, 10 ** (lx[j0] + t * (lx[j] - lx[j0])), np.nan)

    walls = x.wall is not None and y.wall is not None
    return _Searches(target, np.asarray(y.flops)[ib], cost(x.flops), first,
                     np.asarray(y.wall)[ib] if walls else None, cost(x.wall) if walls else None)  # type: ignore


def _paired_medians(a: Curve, b: Curve, n: int, seed: int,
                    draws: dict[tuple[Any, ...], Any] | None) -> tuple[np.ndarray, np.ndarray]:
    """A's then B's resampled medians from one generator seeded with `seed`. `draws` keeps what was drawn for
    other pairs of the same report: A's medians depend only on A's scores, B's on B's scores and on how far A's
    draws moved the generator (A's shape), so a model in several pairs is resampled once, to the same numbers."""
    if draws is None:
        rng = np.random.default_rng(seed)
        return _resampled_medians(rng, a, n), _resampled_medians(rng, b, n)
    shape = tuple(len(s) for s in a.seeds)
    ka, kstate, kb = ("a", n, seed, a.seeds), ("state", n, seed, shape), ("b", n, seed, shape, b.seeds)
    if ka not in draws or kstate not in draws:
        rng = np.random.default_rng(seed)
        draws[ka] = _resampled_medians(rng, a, n)
        draws[kstate] = rng.bit_generator.state
    if kb not in draws:
        rng = np.random.default_rng(seed)
        rng.bit_generator.state = draws[kstate]
        draws[kb] = _resampled_medians(rng, b, n)
    return draws[ka], draws[kb]


def bootstrap_speedups(a: Curve, b: Curve, *, level: float = 0.95, n_resamples: int = SPEEDUP_RESAMPLES,
                       seed: int = DEFAULT_SEED,
                       draws: dict[tuple[Any, ...], Any] | None = None) -> tuple[SpeedupCI, SpeedupCI]:
    """(A to reach B's best, B to reach A's best), each with its bootstrap interval, in FLOPs and wall-clock.

    Both directions share the same resamples (one draw of every checkpoint's seeds per resample),
    from numpy's generator seeded with `seed`: the same scores always give the same intervals.
    `draws`: a dict shared by the calls of one report, so that no curve is resampled twice (same results).
    """
    if not a.flops or not b.flops:
        raise ValueError("both curves need at least one checkpoint")
    walls = a.wall is not None and b.wall is not None
    pa, pb = np.asarray([a.medians]), np.asarray([b.medians])
    points = (_search(a, pa, b, pb), _search(b, pb, a, pa))
    if min(a.min_seeds, b.min_seeds) < 2:  # nothing to resample: the interval is the point, which says nothing
        return (_unresampled(points[0], a, b, level), _unresampled(points[1], b, a, level))
    ma, mb = _paired_medians(a, b, n_resamples, seed, draws)
    out = []
    for k, (x, mx, y, my) in enumerate(((a, ma, b, mb), (b, mb, a, ma))):
        found = _search(x, mx, y, my)
        r = found.ratios()
        low, high = _percentiles(r, level)
        wlow, whigh = _percentiles(found.ratios(wall=True), level) if walls else (math.nan, math.nan)
        never, first = float(np.mean(r == 0.0)), float(np.mean(found.first))
        point = points[k].speedup(0)
        # lower bounds (A there at its first point) in the top tail leave the interval's upper end unknown
        open_high = first >= (1 - level) / 2 or point.at_first_point
        out.append(SpeedupCI(point, low, high, open_high, never, first,
                             points[k].speedup(0, wall=True) if walls else None, wlow, whigh, level, n_resamples,
                             x.min_seeds, y.min_seeds, "monte-carlo"))
    return out[0], out[1]


def _unresampled(found: _Searches, x: Curve, y: Curve, level: float, method: str = "single-seed") -> SpeedupCI:
    """A speed-up with no interval (its low = high = the point): speedup_withheld refuses it by `method`."""
    p = found.speedup(0)
    w = found.speedup(0, wall=True) if found.a_wall is not None else None
    wr = _ratio(w) if w is not None else math.nan
    return SpeedupCI(p, _ratio(p), _ratio(p), True, float(p.a_flops is None), float(p.at_first_point), w, wr, wr,
                     level, 0, x.min_seeds, y.min_seeds, method)


def speedup_withheld(s: SpeedupCI) -> str | None:
    """Why this speed-up must not be claimed, or None when its interval supports it."""
    if s.method == "no-seeds":
        return "the per-seed scores are missing (a table read back from a file), so it has no interval"
    if s.method == "single-seed":
        return "one pretraining run per checkpoint gives no spread to put an interval on it"
    if s.low <= 1.0 <= s.high:
        first = (f" (in {s.p_first:.0%} of them its first checkpoint already reaches the target, so the curve "
                 f"cannot say how much less it needs)") if s.high_open else ""
        return (f"the speed-up's {s.level:.0%} interval over {s.n_resamples} resamples of {s.seeds_a} vs {s.seeds_b} "
                f"pretraining runs per checkpoint, {_span(s.low, s.high, s.high_open)}{first}, spans 1x")
    return None


# --- sentences ----------------------------------------------------------------------------------


def fmt_flops(x: float) -> str:
    return f"{x:.2g}"


def _x(ratio: float) -> str:
    """4.0 -> '4x'; 0 -> '0x' (never reaches)."""
    return f"{ratio:.3g}x"


def _span(low: float, high: float, open_high: bool = False) -> str:
    """'2.4x to 5.3x'; with an open upper end (lower bounds in the top tail) '0x to at least 11x', or
    'from 16x, upper end open' when the two ends meet."""
    if not open_high:
        return f"{_x(low)} to {_x(high)}"
    return f"{_x(low)} to at least {_x(high)}" if high > low else f"from {_x(low)}, upper end open"


def ratio_phrase(ratio: float) -> str:
    """4.0 -> '1/4 of the compute'; 0.5 -> '2x the compute'."""
    if ratio >= 1:
        return f"1/{ratio:.2g} of the compute"
    return f"{1 / ratio:.2g}x the compute"


def _seconds(x: float) -> str:
    return f"{x:.3g} s"


def _wall_phrase(b: str, s: SpeedupCI) -> str:
    """' and 3.2x in wall-clock (30 s against bert's 96 s; 95% CI 2.5x to 4x)', or why there is none."""
    w = s.wall
    if w is None:
        return ", with no wall-clock time per checkpoint to compare"
    if w.a_flops is None:
        return f" but never in wall-clock within its run's time ({s.level:.0%} CI {_span(s.wall_low, s.wall_high)})"
    first = w.at_first_point or s.high_open
    return (f" and {'at least ' if w.at_first_point else ''}{_x(s.wall_ratio or 0.0)} in wall-clock "
            f"({_seconds(w.a_flops)} against {b}'s {_seconds(w.b_flops)}; {s.level:.0%} CI "
            f"{_span(s.wall_low, s.wall_high, first)})")


def speedup_phrase(a: str, b: str, s: SpeedupCI) -> str:
    """What A needs to reach B's best, in the paper's terms, with its interval in FLOPs and in wall-clock."""
    p = s.point
    ci = (f"{s.level:.0%} CI {_span(s.low, s.high, s.high_open)}, {s.n_resamples} resamples of "
          f"{s.seeds_a} vs {s.seeds_b} pretraining runs per checkpoint")
    if p.a_flops is None:
        return (f"{a} never reaches {b}'s best score ({p.target:.4f}) within its budget (it falls short in "
                f"{s.p_never:.0%} of {s.n_resamples} resamples of {s.seeds_a} vs {s.seeds_b} pretraining runs per checkpoint; "
                f"{s.level:.0%} CI of the speed-up {_span(s.low, s.high, s.high_open)})")
    best = f"{b}'s best score ({p.target:.4f}, which {b} reached with {fmt_flops(p.b_flops)} FLOPs)"
    if p.at_first_point:
        return (f"{a} already matches {best} at its first checkpoint ({fmt_flops(p.a_flops)} FLOPs), i.e. with at "
                f"most {ratio_phrase(s.ratio)}: a speed-up of at least {_x(s.ratio)} in FLOPs ({ci})"
                + _wall_phrase(b, s))
    return (f"{a} reaches {best} with {fmt_flops(p.a_flops)} FLOPs, i.e. {ratio_phrase(s.ratio)}: a speed-up of "
            f"{_x(s.ratio)} in FLOPs ({ci})" + _wall_phrase(b, s))


BOTH_AT_FIRST = ("both reach the other's best score at their first checkpoint, so the curves cannot tell their "
                 "compute apart")


def withheld_reasons(a_to_b: SpeedupCI | None, b_to_a: SpeedupCI | None,
                     withheld: str | None = None) -> tuple[str | None, str | None]:
    """Why each direction's speed-up is not claimed (None: it is): the pair's own reason (e.g. neither
    beats the control), both at their first checkpoint, or the direction's interval (speedup_withheld)."""
    if a_to_b is None or b_to_a is None:
        return "no compute curves", "no compute curves"
    if withheld:
        return withheld, withheld
    if a_to_b.point.at_first_point and b_to_a.point.at_first_point:
        return BOTH_AT_FIRST, BOTH_AT_FIRST
    return speedup_withheld(a_to_b), speedup_withheld(b_to_a)
