"""The claim's statistics against hand-computed values: bootstrap of the median gap, speedup interpolation."""

from __future__ import annotations

import itertools
import math
import random
import statistics
from fractions import Fraction

import pytest

from bench.results.claims import claim_sentence
from bench.results.inference import compare
from bench.results.stats import (Curve, GapCI, Speedup, bootstrap_median_gap, bootstrap_speedups, flops_to_reach,
                                 gap_distribution, median_distribution, speedup)


# --- bootstrap ---------------------------------------------------------------------------------


def test_median_distribution_two_seeds_by_hand():
    # resamples {a1,a1}, {a1,a2}, {a2,a1}, {a2,a2}: medians 0.80, 0.82, 0.82, 0.84
    assert median_distribution([0.80, 0.84]) == {0.80: Fraction(1, 4), 0.82: Fraction(1, 2), 0.84: Fraction(1, 4)}


def test_median_distribution_three_seeds_by_hand():
    # median = 1 when at least two of three draws are 1: 3 * (1/3)^2 * (2/3) + (1/3)^3 = 7/27
    assert median_distribution([1.0, 2.0, 3.0]) == {1.0: Fraction(7, 27), 2.0: Fraction(13, 27),
                                                    3.0: Fraction(7, 27)}


def test_gap_ci_two_seeds_each_by_hand():
    # a medians {0.80: 1/4, 0.82: 1/2, 0.84: 1/4}; b medians {0.78: 1/4, 0.79: 1/2, 0.80: 1/4}.
    # Each extreme gap has probability 1/16 > 2.5%, so the 95% interval is the whole range [0.00, 0.06];
    # the gap is <= 0 only for (0.80, 0.80): P(a ahead) = 15/16.
    ci = bootstrap_median_gap([0.80, 0.84], [0.78, 0.80])
    assert ci.method == "exact" and (ci.n_a, ci.n_b) == (2, 2)
    assert ci.gap == pytest.approx(0.03)
    assert ci.low == pytest.approx(0.0) and ci.high == pytest.approx(0.06)
    assert ci.p_greater == pytest.approx(15 / 16) and ci.p_less == 0.0
    assert ci.includes_zero


def test_gap_ci_five_seeds_80_percent_by_hand():
    # b is constant 0, so the gap is a's bootstrap median. P(median = 1) = P(>= 3 of 5 draws are 1)
    # = (10*16 + 5*4 + 1) / 3125 = 181/3125 = 5.8% < 10%; P(median <= 2) = P(>= 3 of 5 draws <= 2) = 31.7% >= 10%.
    a = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert median_distribution(a)[1.0] == Fraction(181, 3125)
    ci = bootstrap_median_gap(a, [0.0] * 5, level=0.80)
    assert (ci.gap, ci.low, ci.high) == (3.0, 2.0, 4.0)
    assert not ci.includes_zero  # the old method: excludes 0 at 3 vs 3
    wide = bootstrap_median_gap(a, [0.0] * 5, level=0.95)  # 5.8% > 2.5%: the extremes stay in
    assert (wide.low, wide.high) == (1.0, 5.0)


def test_gap_ci_three_vs_three_by_hand():
    # extremes: 0.84 - 0.81 = 0.03 with probability (7/27)^2 = 6.7% > 2.5%, so they bound the interval
    ci = bootstrap_median_gap([0.84, 0.85, 0.86], [0.79, 0.80, 0.81])
    assert ci.gap == pytest.approx(0.05)
    assert ci.low == pytest.approx(0.03) and ci.high == pytest.approx(0.07)
    assert ci.p_greater == 1.0 and not ci.includes_zero


def _brute_force(a, b):
    """Every ordered resample of both sides, equally likely."""
    out = {}
    total = len(a) ** len(a) * len(b) ** len(b)
    for ra in itertools.product(a, repeat=len(a)):
        ma = statistics.median(ra)
        for rb in itertools.product(b, repeat=len(b)):
            g = round(ma - statistics.median(rb), 12)
            out[g] = out.get(g, 0) + 1
    return {g: Fraction(c, total) for g, c in out.items()}


@pytest.mark.parametrize("na,nb", [(2, 3), (3, 3), (4, 2), (4, 4)])
def test_exact_distribution_matches_brute_force(na, nb):
    rng = random.Random(na * 10 + nb)
    a = [round(rng.uniform(0.7, 0.9), 3) for _ in range(na)]
    b = [round(rng.uniform(0.7, 0.9), 3) for _ in range(nb)]
    assert gap_distribution(a, b) == _brute_force(a, b)


def test_interval_is_symmetric_under_swap():
    a, b = [0.81, 0.83, 0.86, 0.80], [0.79, 0.82, 0.80]
    ab, ba = bootstrap_median_gap(a, b), bootstrap_median_gap(b, a)
    assert ab.low == pytest.approx(-ba.high) and ab.high == pytest.approx(-ba.low)
    assert ab.p_greater == pytest.approx(ba.p_less)


def test_monte_carlo_for_many_seeds_is_deterministic_and_sane():
    rng = random.Random(0)
    a = [0.85 + rng.gauss(0, 0.01) for _ in range(12)]
    b = [0.80 + rng.gauss(0, 0.01) for _ in range(12)]
    one, two = bootstrap_median_gap(a, b), bootstrap_median_gap(a, b)
    assert one.method == "monte-carlo" and one == two
    assert one.low < one.gap < one.high and one.low > 0
    assert bootstrap_median_gap(a, b, seed=1) != one  # the seed is what makes it repeatable


def test_single_seed_is_not_judged():
    ci = bootstrap_median_gap([0.9], [0.8, 0.7])
    assert ci.method == "single-seed" and not ci.judgeable
    one = compare([[0.9]], [[0.8, 0.7]])  # the shipped method: one seed a side has no spread to measure noise by
    assert one.verdict == "unknown" and "cannot judge" in claim_sentence("electra", "bert", one, where="sst2")


# --- speedup --------------------------------------------------------------------------------------

FLOPS = [1e12, 2e12, 4e12, 8e12, 16e12]  # 1/16 ... 1 of a 1.6e13 budget


def test_flops_to_reach_interpolates_in_log_flops():
    # 0.65 lies halfway between 0.6 (2e12) and 0.7 (4e12): log10 midpoint = sqrt(2e12 * 4e12) = 2.828e12
    need, first = flops_to_reach(FLOPS, [0.5, 0.6, 0.7, 0.75, 0.8], 0.65)
    assert need == pytest.approx(math.sqrt(8) * 1e12) and not first
    assert flops_to_reach(FLOPS, [0.5, 0.6, 0.7, 0.75, 0.8], 0.7) == (pytest.approx(4e12), False)  # a point itself
    assert flops_to_reach(FLOPS, [0.5, 0.6, 0.7, 0.75, 0.8], 0.81) == (None, False)  # never reached
    assert flops_to_reach(FLOPS, [0.5, 0.6, 0.7, 0.75, 0.8], 0.4) == (1e12, True)  # already there at 1/16


def test_flops_to_reach_takes_the_first_crossing_and_ignores_zero_flops():
    # non-monotone noise: reached between 1e12 (0.5) and 2e12 (0.9) at a quarter of the way
    need, _ = flops_to_reach([0.0, 1e12, 2e12, 4e12], [0.99, 0.5, 0.9, 0.6], 0.6)
    assert need == pytest.approx(10 ** (12 + 0.25 * math.log10(2)))


def test_speedup_by_hand():
    # B's best is 0.65 at 16e12; A reaches 0.65 at 2.828e12: ratio 16 / 2.828 = 5.657 (= 4 * sqrt 2)
    s = speedup(FLOPS, [0.5, 0.6, 0.7, 0.75, 0.8], FLOPS, [0.5, 0.55, 0.6, 0.62, 0.65])
    assert s.target == 0.65 and s.b_flops == 16e12
    assert s.a_flops == pytest.approx(math.sqrt(8) * 1e12)
    assert s.ratio == pytest.approx(4 * math.sqrt(2))
    back = speedup(FLOPS, [0.5, 0.55, 0.6, 0.62, 0.65], FLOPS, [0.5, 0.6, 0.7, 0.75, 0.8])
    assert back.a_flops is None and back.ratio is None


def test_speedup_best_point_is_the_cheapest_among_ties():
    s = speedup(FLOPS, [0.7, 0.8, 0.8, 0.8, 0.8], FLOPS, [0.6, 0.7, 0.75, 0.75, 0.7])
    assert s.target == 0.75 and s.b_flops == 4e12
    # A reaches 0.75 halfway (in log) between 1e12 and 2e12
    assert s.a_flops == pytest.approx(math.sqrt(2) * 1e12)


# --- sentences ------------------------------------------------------------------------------------


def test_claim_sentence_no_difference_is_honest():
    # 2 vs 2 seeds of one checkpoint each: the old exact bootstrap interval was the seed ranges' gap (+0 to +0.06),
    # which excludes 0 a third of the time under no difference; Welch's t over the seeds is far wider
    ci = compare([[0.80, 0.84]], [[0.78, 0.80]])
    text = claim_sentence("electra", "bert", ci, where="sst2 (tiny, 3e+13 FLOPs)")
    assert text.startswith("sst2 (tiny, 3e+13 FLOPs): electra vs bert at matched FLOPs: one pretraining run on a side")
    assert "mean score over 2 vs 2 fine-tuning seeds, gap +0.0300 (95% CI" in text
    assert ci.low < -0.1 and ci.high > 0.1
    assert "no measurable difference at this scale" in text and "neither supported nor refuted" in text
    assert text.endswith(".") and text.count(".") >= 1


def _curve(medians, spread=(-0.01, 0.0, 0.01), s_per_flop=7.5e-12):
    return Curve.of(FLOPS, [[round(m + d, 6) for d in spread] for m in medians], [f * s_per_flop for f in FLOPS])


def test_claim_sentence_holds_with_speedup():
    ci = compare([[0.84, 0.85, 0.86], [0.85, 0.86, 0.87]], [[0.79, 0.80, 0.81], [0.80, 0.81, 0.82]])
    ab, ba = bootstrap_speedups(_curve([0.70, 0.76, 0.80, 0.83, 0.85]), _curve([0.66, 0.70, 0.74, 0.78, 0.80]))
    assert ab.point.ratio == pytest.approx(4.0)
    text = claim_sentence("electra", "bert", ci, where="sst2", a_to_b=ab, b_to_a=ba)
    assert "the claim that electra beats bert holds at this scale" in text
    assert "electra reaches bert's best score (0.8000" in text and "1/4 of the compute" in text
    assert "bert never reaches electra's best score (0.8500) within its budget" in text
    assert "over 2 vs 2 pretraining runs (6 vs 6 fine-tuning runs in all)" in text


def test_claim_sentence_reverse():
    ci = compare([[0.79, 0.80, 0.81], [0.78, 0.79, 0.80]], [[0.84, 0.85, 0.86], [0.85, 0.86, 0.87]])
    text = claim_sentence("electra", "bert", ci, where="sst2")
    assert ci.verdict == "worse"
    assert "does not hold at this scale: bert is better" in text


def test_types_are_dataclasses():
    assert isinstance(bootstrap_median_gap([1, 2], [1, 2]), GapCI)
    assert isinstance(speedup([1, 2], [0.1, 0.2], [1, 2], [0.1, 0.2]), Speedup)
