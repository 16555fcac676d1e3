"""Compute speed-ups with their bootstrap interval, seed counts and the second FLOP convention in the report.

Hand-made stores (runs written straight into a Store, no training): curves of median scores at
1/16 .. 1 of the budget, seeds spread around each median, per-step costs and times chosen so the
expected speed-ups can be read off by hand.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.results.claims import claim_sentence, claims_frame, pair_claims
from bench.results.inference import compare
from bench.results.formats.html import claims_display
from bench.results.report import build_report
from bench.results.stats import Curve, bootstrap_speedups, speedup_withheld
from bench.results.store import Metric, Store
from bench.results.tables import COLUMNS, comparison_table

FRACTIONS = (0.0625, 0.125, 0.25, 0.5, 1.0)
STEPS = 160
PAPER_PER_STEP = 1e11
BUDGET = STEPS * PAPER_PER_STEP  # 1.6e13: 160 steps of 1e11 paper FLOPs
ENV = {"device": "cpu", "code_version": "src-test", "git_sha": "abc123"}
# electra reaches bert's best (0.80) exactly at its 1/4 checkpoint: a 4x speed-up in FLOPs
CLEAR = {"electra": [0.70, 0.76, 0.80, 0.83, 0.85], "bert": [0.66, 0.70, 0.74, 0.78, 0.80]}
# every point within seed noise of the control (0.60); electra's lucky 1/4 point put the old report at
# "electra already matches bert's best score ... 1/4 of the compute"
NOISE = {"electra": [0.59, 0.60, 0.61, 0.59, 0.60], "bert": [0.59, 0.59, 0.60, 0.60, 0.605]}
TIGHT5 = (-0.004, -0.002, 0.0, 0.002, 0.004)  # five seeds close around each median
SPREAD3 = (-0.01, 0.0, 0.01)


def pretrain(store: Store, model: str, *, s_per_step: float = 0.75, start_s: float = 0.0,
             executed_per_step: float = 0.8e11, paper_per_step: float = PAPER_PER_STEP, convention: str = "paper",
             checkpoint_wall: bool = True, pretrains: bool = True, seed: int = 0) -> str:
    """A finished pretraining run with a checkpoint series; its clock reads start_s + s_per_step x step."""
    run_id = f"pt-{model}" + (f"-s{seed}" if seed else "")
    spec = {"model": model, "size": "tiny", "convention": convention, "pretrains": pretrains, "external": None,
            "budget": {"kind": "flops", "value": BUDGET if pretrains else 0.0, "text": f"{BUDGET:g}"}, "seed": seed}
    budget = STEPS * (paper_per_step if convention == "paper" else executed_per_step) if pretrains else 0.0
    store.claim(run_id, kind="pretrain", model=model, spec=spec, code_version="src-test", size="tiny",
                budget=budget, git_sha="abc123", environment=ENV)
    if not pretrains:
        store.finish(run_id, [Metric("steps", 0), Metric("wall_s", 0.0), Metric("flops_paper", 0.0),
                              Metric("flops_executed", 0.0)])
        return run_id
    per = {"paper": paper_per_step, "executed": executed_per_step}
    metrics = [Metric("steps", STEPS), Metric("wall_s", start_s + STEPS * s_per_step), Metric("tokens_per_s", 5000.0),
               Metric("flops_paper", STEPS * per["paper"]), Metric("flops_executed", STEPS * per["executed"]),
               Metric("flops_per_step_paper", per["paper"]), Metric("flops_per_step_executed", per["executed"])]
    for f in FRACTIONS:
        step = round(STEPS * f)
        metrics.append(Metric("checkpoint", f, step=step, flops=step * per[convention],
                              wall_s=start_s + step * s_per_step if checkpoint_wall else None))
    for step in range(10, STEPS + 1, 10):  # the logged loss series carries the loop's timestamps
        metrics.append(Metric("loss", 7.0 - step / STEPS, step=step, flops=step * per[convention],
                              wall_s=start_s + step * s_per_step))
    store.finish(run_id, metrics)
    return run_id


def finetune(store: Store, parent: str, model: str, fraction: float, scores: list[float]) -> None:
    for seed, score in enumerate(scores):
        run_id = f"ft-{parent}-{fraction:g}-{seed}"
        spec = {"model": model, "task": "sst2", "seed": seed, "fraction": fraction, "pretrain_id": parent,
                "size": "tiny", "settings": {"lr": 3e-4}}
        store.claim(run_id, kind="finetune", model=model, spec=spec, code_version="src-test", task="sst2",
                    size="tiny", seed=seed, parent_id=parent, git_sha="abc123", environment=ENV)
        store.finish(run_id, [Metric("score", score), Metric("metric_accuracy", score), Metric("train_wall_s", 10.0),
                              Metric("eval_wall_s", 1.0)])


RUNS5 = (0.0, -0.002, 0.002, -0.001, 0.001)  # five pretraining runs: each run's shift of the whole curve
NOISY5 = (0.0, -0.01, 0.01, -0.005, 0.005)  # five pretraining runs as far apart as the seeds


def make_store(path: Path, curves: dict[str, list[float]], *, spread: dict[str, tuple[float, ...]] | None = None,
               control: float | None = 0.60, runs: tuple[float, ...] = (0.0,), **per_model: dict) -> Store:
    """Curves per model (3 seeds each unless `spread` says otherwise), the scratch control at `control`;
    `runs`: one pretraining run per entry, its curve shifted by it; per_model[name]: pretrain() keywords."""
    store = Store(path)
    store._conn.execute("PRAGMA synchronous = OFF")  # test-only: no fsync per small commit
    for model, medians in curves.items():
        for i, shift in enumerate(runs):
            pt = pretrain(store, model, seed=i, **per_model.get(model, {}))
            ds = (spread or {}).get(model, SPREAD3)
            for f, m in zip(FRACTIONS, medians):
                finetune(store, pt, model, f, [round(m + shift + d, 6) for d in ds])
    if control is not None:
        for i, shift in enumerate(runs):
            pt = pretrain(store, "scratch", pretrains=False, seed=i)
            finetune(store, pt, "scratch", 1.0, [round(control + shift + d, 6) for d in SPREAD3])
    return store


def main_claim(store: Store, control: str | None = "scratch"):
    claims = pair_claims(comparison_table(store), control)
    assert (claims[0].a, claims[0].b, claims[0].vs_control) == ("electra", "bert", False)
    return claims[0]


# --- (a) noise around the control: no speed-up -----------------------------------------------------------


def test_noise_around_the_control_claims_no_speedup_and_says_why(tmp_path):
    with make_store(tmp_path / "bench.db", NOISE, runs=NOISY5) as s:
        claim = main_claim(s)
        lines = build_report(s).lines
    assert claim.a_to_b.ratio > 1  # the medians alone would have claimed a speed-up: one lucky checkpoint
    text = claim.sentence
    assert ("no compute speed-up is claimed: neither electra nor bert beats the scratch control at the full budget"
            in text)
    assert "speed-up of" not in text and "already matches" not in text and "of the compute" not in text
    assert lines[0] == text
    rec = claim.record()
    assert rec["speedup_a_withheld"].startswith("neither electra nor bert beats the scratch control")
    assert rec["speedup_b_withheld"] == rec["speedup_a_withheld"]
    shown = claims_display([claim]).iloc[0]  # the HTML report's claims table
    assert (shown["speedup_a"], shown["wall_speedup_a"], shown["speedup_b"]) == ("withheld",) * 3


def test_noise_without_a_control_is_withheld_because_the_interval_spans_1x(tmp_path):
    with make_store(tmp_path / "bench.db", NOISE, control=None, runs=NOISY5) as s:
        claim = main_claim(s, control=None)
    assert claim.a_to_b.low <= 1 <= claim.a_to_b.high
    assert "no speed-up is claimed for electra reaching bert's best score (0.6050)" in claim.sentence
    assert "95% interval over 2000 resamples of 5 vs 5 pretraining runs per checkpoint" in claim.sentence
    assert "spans 1x" in claim.sentence and "speed-up of" not in claim.sentence
    assert "spans 1x" in claim.record()["speedup_a_withheld"]


# --- (b) a clear speed-up: printed with its interval, in FLOPs and wall-clock ---------------------------


def test_clear_speedup_is_printed_with_its_interval_in_flops_and_wall_clock(tmp_path):
    with make_store(tmp_path / "bench.db", CLEAR, runs=RUNS5) as s:
        claim = main_claim(s)
    ab = claim.a_to_b
    assert ab.ratio == pytest.approx(4.0) and 1 < ab.low < 4 < ab.high
    assert ab.wall_ratio == pytest.approx(4.0) and 1 < ab.wall_low <= ab.wall_high
    text = claim.sentence
    assert (f"electra reaches bert's best score (0.8000, which bert reached with 1.6e+13 FLOPs) with 4e+12 FLOPs, "
            f"i.e. 1/4 of the compute: a speed-up of 4x in FLOPs (95% CI {ab.low:.3g}x to {ab.high:.3g}x, 2000 "
            f"resamples of 5 vs 5 pretraining runs per checkpoint)") in text
    assert f"and 4x in wall-clock (30 s against bert's 120 s; 95% CI {ab.wall_low:.3g}x to {ab.wall_high:.3g}x)" in text
    assert "bert never reaches electra's best score (0.8500) within its budget (it falls short in 100%" in text
    rec = claim.record()
    assert (rec["speedup_a"], rec["speedup_a_low"], rec["speedup_a_high"]) == (pytest.approx(4.0), ab.low, ab.high)
    assert rec["wall_speedup_a"] == pytest.approx(4.0) and rec["speedup_a_withheld"] == ""
    assert rec["speedup_b"] == 0.0 and rec["speedup_b_withheld"] == ""  # never reaching it is a claim too
    shown = claims_display([claim]).iloc[0]  # the HTML report's claims table
    assert shown["speedup_a"] == f"4.00x ({ab.low:.2f}x to {ab.high:.2f}x)"
    assert shown["wall_speedup_a"].startswith("4.00x (") and shown["speedup_b"] == "never (0.00x to 0.00x)"


def test_one_pretraining_run_per_curve_claims_no_speedup(tmp_path):
    # the same clear curves from one pretraining run each: a lucky early checkpoint of one run would be invisible
    with make_store(tmp_path / "bench.db", CLEAR, spread={"electra": TIGHT5, "bert": TIGHT5}) as s:
        claim = main_claim(s)
    assert claim.a_to_b.ratio == pytest.approx(4.0)  # the point estimate is there, in the record
    assert ("no compute speed-up is claimed: the curves rest on 1 vs 1 pretraining run(s) of electra and bert"
            in claim.sentence)
    assert "speed-up of" not in claim.sentence
    assert claim.record()["speedup_a_withheld"].startswith("the curves rest on 1 vs 1")


def test_the_speedup_interval_by_hand_and_deterministic():
    # B: one checkpoint (16e12) whose median is always 0.55. A: 0.5 at 1e12, then {0.6, 1.0} at 4e12, whose
    # resampled median is 0.6, 0.8 or 1.0 with probability 1/4, 1/2, 1/4. A crosses 0.55 a fraction
    # t = 0.05 / (m - 0.5) of the way (in log FLOPs) from 1e12 to 4e12: at 2e12, 4^(1/6)e12 or 4^(1/10)e12, so the
    # ratio is 8, 16 / 4^(1/6) = 12.7 or 16 / 4^(1/10) = 13.9; each has far more than 2.5%, so the 95% interval
    # is [8, 13.9].
    a = Curve.of([1e12, 4e12], [[0.5, 0.5], [0.6, 1.0]])
    b = Curve.of([16e12], [[0.55, 0.55]])
    ab, ba = bootstrap_speedups(a, b)
    assert ab.point.ratio == pytest.approx(16 / 4 ** (1 / 6))  # the medians: 0.8 at 4e12
    assert ab.low == pytest.approx(8.0) and ab.high == pytest.approx(16 / 4 ** 0.1)
    assert ab.method == "monte-carlo" and ab.n_resamples == 2000 and ab.p_never == 0 and not ab.high_open
    assert ba.point.a_flops is None and ba.p_never == 1.0 and (ba.low, ba.high) == (0.0, 0.0)  # 0.55 < A's 0.6+
    assert bootstrap_speedups(a, b) == (ab, ba)  # seeded: the same scores, the same intervals


def test_draws_shared_by_a_report_give_each_pair_its_own_intervals():
    """pair_claims shares resamples between pairs (stats._paired_medians): in any order of pairs, with curves of
    different seed counts (which move the generator differently), every interval is the one a fresh generator gives."""
    import random

    flops = [1e12, 2e12, 4e12, 8e12]
    curves = [Curve.of(flops, [[0.5 + 0.05 * i + 0.01 * m + 0.004 * ((k * 7 + m) % 5) for k in range(n)]
                               for i in range(4)], [f / 1e9 for f in flops])
              for m, n in enumerate((3, 4, 3, 5))]
    pairs = [(a, b) for a in range(4) for b in range(4) if a != b] * 2
    random.Random(0).shuffle(pairs)
    draws: dict = {}
    for a, b in pairs:
        assert bootstrap_speedups(curves[a], curves[b], draws=draws) == bootstrap_speedups(curves[a], curves[b])
    # B's draws are kept per (A's shape, B): curves 0 and 2 both have 3 seeds per point, so (0, b) and (2, b)
    # share them; 12 ordered pairs, 10 draws
    assert len([k for k in draws if k[0] == "b"]) == 10


def test_the_resampled_search_follows_speedup_exactly():
    """The bootstrap runs `speedup`'s rules vectorised: row by row it must agree, ties and misses included."""
    import math

    import numpy as np

    from bench.results.stats import _search, speedup

    rng = np.random.default_rng(5)
    for _ in range(100):
        fa = sorted(rng.choice([1e12, 2e12, 3e12, 4e12, 8e12, 16e12], int(rng.integers(1, 6)), replace=False))
        fb = sorted(rng.choice([1e12, 2e12, 3e12, 4e12, 8e12, 16e12], int(rng.integers(1, 6)), replace=False))
        a = Curve.of(fa, [[0.5]] * len(fa), [f / 1e11 for f in fa])
        b = Curve.of(fb, [[0.5]] * len(fb), [f / 1e11 for f in fb])
        ma, mb = (rng.choice([0.5, 0.6, 0.7, 0.8], (20, len(f))) for f in (fa, fb))  # many ties
        found = _search(a, ma, b, mb)
        for i in range(20):
            for wall, (xa, xb) in ((False, (a.flops, b.flops)), (True, (a.wall, b.wall))):
                want, got = speedup(xa, ma[i], xb, mb[i]), found.speedup(i, wall=wall)
                assert (got.target, got.b_flops, got.at_first_point) == (want.target, want.b_flops,
                                                                         want.at_first_point)
                assert (got.a_flops is None) == (want.a_flops is None)
                assert got.a_flops is None or math.isclose(got.a_flops, want.a_flops, rel_tol=1e-12)


def test_one_seed_per_checkpoint_gives_no_speedup():
    flops = [1e12, 2e12, 4e12]
    ab, _ = bootstrap_speedups(Curve.of(flops, [[0.7], [0.8], [0.9]]), Curve.of(flops, [[0.6], [0.65], [0.7]]))
    assert ab.method == "single-seed" and "one pretraining run per checkpoint" in speedup_withheld(ab)


def test_already_there_at_the_first_checkpoint_is_a_lower_bound():
    flops = [1e12, 2e12, 4e12, 8e12, 16e12]
    a = Curve.of(flops, [[0.90, 0.91, 0.92]] * 5)  # A starts above everything B ever reaches
    b = Curve.of(flops, [[m - 0.005, m, m + 0.005] for m in CLEAR["bert"]])
    ab, _ = bootstrap_speedups(a, b)
    assert ab.point.at_first_point and ab.high_open and ab.low == pytest.approx(16.0)
    assert speedup_withheld(ab) is None
    text = claim_sentence("a", "b", compare([[0.9, 0.91, 0.92]] * 5, [[0.795, 0.8, 0.805]] * 5), where="t",
                          a_to_b=ab, b_to_a=_)
    assert "a already matches b's best score" in text and "a speed-up of at least 16x" in text
    assert "(95% CI from 16x, upper end open, 2000 resamples" in text  # lower bounds in the top tail
    assert "with no wall-clock time per checkpoint to compare" in text


# --- (c) wall-clock differs from FLOPs when the per-step time differs ------------------------------------


@pytest.mark.parametrize("checkpoint_wall", [True, False], ids=["checkpoint-wall", "from-logged-series"])
def test_wall_clock_speedup_follows_per_step_time(tmp_path, checkpoint_wall):
    # electra's step takes twice as long (1.5 s vs 0.75 s) after a 20 s start: it reaches bert's best at its
    # step 40, after 20 + 60 = 80 s, against bert's 160 x 0.75 = 120 s: 4x less compute is only 1.5x less time.
    # (A share of electra's whole run, 260 s x 1/4 = 65 s, would say 1.85x.)
    slow = {"s_per_step": 1.5, "start_s": 20.0, "checkpoint_wall": checkpoint_wall}
    with make_store(tmp_path / "bench.db", CLEAR, runs=RUNS5, electra=slow,
                    bert={"checkpoint_wall": checkpoint_wall}) as s:
        df = comparison_table(s)
        claim = main_claim(s)
    quarter = df[(df["model"] == "electra") & (df["pretrain_steps"] == 40)].iloc[0]
    assert quarter["pretrain_wall_s"] == pytest.approx(80.0)  # the checkpoint's own time, not the run's x 1/4
    assert claim.a_to_b.ratio == pytest.approx(4.0) and claim.a_to_b.wall_ratio == pytest.approx(1.5)
    assert "a speed-up of 4x in FLOPs" in claim.sentence
    assert "and 1.5x in wall-clock (80 s against bert's 120 s; 95% CI" in claim.sentence
    assert claim.record()["wall_speedup_a"] == pytest.approx(1.5)
    assert 1 < claim.record()["wall_speedup_a_low"] <= 1.5 <= claim.record()["wall_speedup_a_high"]


def test_pretrain_wall_is_the_checkpoints_time_not_a_share_of_the_run(tmp_path):
    with Store(tmp_path / "bench.db") as s:
        pt = pretrain(s, "bert")
        # a slow start: the first checkpoint (step 10) recorded 20 s, far more than 1/16 of the run's 120 s
        s._conn.execute("UPDATE metrics SET wall_s = 20.0 WHERE run_id = ? AND name = 'checkpoint' AND step = 10",
                        (pt,))
        finetune(s, pt, "bert", 0.0625, [0.6, 0.61, 0.62])
        df = comparison_table(s)
    assert df["pretrain_wall_s"].tolist() == [20.0]


# --- (d) the unit of a claim: pretraining runs, or two checkpoints ---------------------------------------


def test_one_pretraining_run_a_side_compares_checkpoints_and_more_runs_compare_objectives(tmp_path):
    with make_store(tmp_path / "one.db", CLEAR) as s:  # 1 pretraining run x 3 seeds a side
        one = pair_claims(comparison_table(s), "scratch")
    assert all(c.about == "checkpoints" for c in one)
    assert "compares two checkpoints, not two objectives" in one[0].sentence
    assert "over 3 vs 3 fine-tuning seeds" in one[0].sentence
    with make_store(tmp_path / "five.db", CLEAR, runs=RUNS5) as s:  # 5 pretraining runs x 3 seeds a side
        five = pair_claims(comparison_table(s), "scratch")
    assert all(c.about == "objectives" for c in five)
    assert "over 5 vs 5 pretraining runs (15 vs 15 fine-tuning runs in all)" in five[0].sentence
    assert "two checkpoints" not in five[0].sentence
    assert five[0].record()["pretrain_runs_a"] == 5 and five[0].record()["seeds_a"] == 15


# --- (e) the executed-FLOPs column and the mismatch sentence ------------------------------------------------


def test_both_conventions_are_columns_beside_the_budgets(tmp_path):
    with make_store(tmp_path / "bench.db", CLEAR, electra={"executed_per_step": 0.56e11}) as s:
        rep = build_report(s)
    df = rep.comparison
    i = COLUMNS.index("pretrain_flops")
    assert COLUMNS[i:i + 3] == ["pretrain_flops", "pretrain_flops_paper", "pretrain_flops_executed"]
    assert list(df.columns) == [*COLUMNS, "settings"]
    e = df[df["model"] == "electra"].set_index("pretrain_steps")
    assert e.loc[40, "pretrain_flops"] == e.loc[40, "pretrain_flops_paper"] == pytest.approx(40 * 1e11)
    assert e.loc[40, "pretrain_flops_executed"] == pytest.approx(40 * 0.56e11)  # step x per-step executed cost
    assert df[df["model"] == "scratch"]["pretrain_flops_executed"].tolist() == [0.0]
    text = rep.claims[0].sentence
    assert text.startswith("sst2 (tiny, 1.6e+13 FLOPs): electra vs bert at matched FLOPs (matched in the paper "
                           "convention, electra executes 0.70x bert's FLOPs): one pretraining run")
    rec = rep.claims[0].record()
    assert rec["flops_ratio_paper"] == pytest.approx(1.0) and rec["flops_ratio_executed"] == pytest.approx(0.7)


def test_within_five_percent_no_mismatch_note(tmp_path):
    with make_store(tmp_path / "bench.db", CLEAR, electra={"executed_per_step": 0.77e11}) as s:
        text = main_claim(s).sentence
    assert "matched in the" not in text and "executes" not in text  # 0.9625x: within 5%


def test_executed_budget_names_the_paper_convention(tmp_path):
    # matched in the executed convention (160 steps of 0.8e11 each); the paper counts electra's step 1.43x bert's
    kw = {"convention": "executed"}
    with make_store(tmp_path / "bench.db", CLEAR, electra={**kw, "paper_per_step": 1.43e11}, bert=kw) as s:
        df = comparison_table(s)
        claim = main_claim(s)
    e = df[(df["model"] == "electra") & (df["pretrain_steps"] == STEPS)].iloc[0]
    assert e["pretrain_flops"] == e["pretrain_flops_executed"] == pytest.approx(STEPS * 0.8e11)
    assert e["pretrain_flops_paper"] == pytest.approx(STEPS * 1.43e11)
    assert ("electra vs bert at matched FLOPs (matched in the executed convention, electra spends 1.43x bert's "
            "FLOPs as the paper counts them): one pretraining run") in claim.sentence
    rec = claims_frame([claim]).iloc[0]
    assert rec["flops_ratio_executed"] == pytest.approx(1.0) and rec["flops_ratio_paper"] == pytest.approx(1.43)
