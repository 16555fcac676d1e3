"""Claims with the pretraining run as their unit: replicated runs, Holm's family, power, runs that did not learn.

Stores are written straight into a Store (no training): each model has P pretraining runs (a spec `seed`
each) fine-tuned over S seeds, scores drawn from a two-level normal model with a fixed generator.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.results.claims import pair_claims, verdict_lines
from bench.results.inference import (compare, holm, min_detectable_gap, power, runs_needed, unit_sd,
                                     variance_components)
from bench.results.report import build_report
from bench.results.store import Metric, Store
from bench.results.tables import comparison_table
from bench.train.learning_check import learning_check

BUDGET = 1e13
ENV = {"device": "cpu", "code_version": "src-test", "git_sha": "abc123"}


def _pretrain(store: Store, model: str, seed: int, pretrains: bool = True) -> str:
    run_id = f"pt-{model}-{seed}"
    spec = {"model": model, "size": "tiny", "convention": "paper", "pretrains": pretrains, "external": None,
            "budget": {"kind": "flops", "value": BUDGET if pretrains else 0.0, "text": "1e13"}, "seed": seed}
    store.claim(run_id, kind="pretrain", model=model, spec=spec, code_version="src-test", size="tiny",
                budget=BUDGET if pretrains else 0.0, seed=seed, environment=ENV)
    store.finish(run_id, [Metric("steps", 100 if pretrains else 0), Metric("wall_s", 60.0),
                          Metric("flops_paper", BUDGET if pretrains else 0.0),
                          Metric("flops_executed", BUDGET if pretrains else 0.0)])
    return run_id


def _finetune(store: Store, parent: str, model: str, seed: int, score: float, learned: int = 0) -> None:
    run_id = f"ft-{parent}-{seed}"
    spec = {"model": model, "task": "sst2", "seed": seed, "fraction": 1.0, "pretrain_id": parent, "size": "tiny",
            "settings": {"lr": 1e-3}}
    store.claim(run_id, kind="finetune", model=model, spec=spec, code_version="src-test", task="sst2", size="tiny",
                seed=seed, parent_id=parent, environment=ENV)
    store.finish(run_id, [Metric("score", score), Metric("metric_accuracy", score), Metric("train_wall_s", 1.0),
                          Metric("eval_wall_s", 0.1), Metric("did_not_learn", float(learned)),
                          Metric("trivial_score", 0.5092), Metric("pred_classes", 1.0 if learned else 2.0)])


def two_level_store(path, means: dict[str, float], *, runs: int, seeds: int, sd_pretrain: float = 0.01,
                    sd_finetune: float = 0.01, seed: int = 0, stuck: tuple[str, ...] = ()) -> Store:
    """Each model: `runs` pretraining runs (offset ~ N(0, sd_pretrain)), each fine-tuned over `seeds` seeds
    (~ N(0, sd_finetune)); a model in `stuck` predicts SST-2's majority class in every run."""
    rng = np.random.default_rng(seed)
    store = Store(path)
    store._conn.execute("PRAGMA synchronous = OFF")  # test-only: no fsync per small commit
    for model, mean in means.items():
        for r in range(runs):
            pt = _pretrain(store, model, r, pretrains=model != "scratch")
            offset = rng.normal(0, sd_pretrain)
            for s in range(seeds):
                if model in stuck:
                    _finetune(store, pt, model, s, 0.5092, learned=1)
                else:
                    _finetune(store, pt, model, s, float(mean + offset + rng.normal(0, sd_finetune)))
    return store


# --- acceptance: no difference is not claimed, a clear one is ------------------------------------------------


def test_identical_objectives_over_many_runs_claim_no_difference(tmp_path):
    with two_level_store(tmp_path / "bench.db", {"electra": 0.80, "bert": 0.80}, runs=8, seeds=5) as s:
        claims = pair_claims(comparison_table(s), None)
    (c,) = claims
    assert c.about == "objectives" and c.ci.runs_a == 8 and c.ci.seeds_a == 40
    assert c.verdict == "same" and c.ci.low < 0 < c.ci.high
    assert "no measurable difference at this scale" in c.sentence
    assert "over 8 vs 8 pretraining runs (40 vs 40 fine-tuning runs in all)" in c.sentence


def test_a_clear_gap_with_enough_runs_is_claimed(tmp_path):
    with two_level_store(tmp_path / "bench.db", {"electra": 0.83, "bert": 0.80}, runs=5, seeds=5) as s:
        (c,) = pair_claims(comparison_table(s), None)
    assert c.about == "objectives" and c.verdict == "better" and c.ci.low > 0
    assert "the claim that electra beats bert holds at this scale" in c.sentence
    assert "the smallest gap this design detects with 80% power" in c.sentence
    assert 0 < c.record()["min_detectable_gap"] < 0.04


def test_the_same_gap_from_one_run_each_compares_checkpoints_only(tmp_path):
    with two_level_store(tmp_path / "bench.db", {"electra": 0.83, "bert": 0.80}, runs=1, seeds=5) as s:
        (c,) = pair_claims(comparison_table(s), None)
    assert c.about == "checkpoints"
    assert "one pretraining run on a side, so this compares two checkpoints, not two objectives" in c.sentence
    assert "the claim that electra beats bert" not in c.sentence


def test_the_table_counts_pretraining_runs_and_seeds(tmp_path):
    with two_level_store(tmp_path / "bench.db", {"electra": 0.80, "bert": 0.79}, runs=3, seeds=4) as s:
        df = comparison_table(s)
        seeds = build_report(s).seeds
    assert df["pretrain_runs"].tolist() == [3, 3] and df["seeds"].tolist() == [4, 4]
    assert sorted(set(seeds["pretrain_seed"])) == [0, 1, 2]


# --- multiplicity: one report, one family ---------------------------------------------------------------


def test_holm_by_hand():
    # sorted p: 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1, but never below the step before: 0.06)
    assert holm([0.01, 0.04, 0.03, math.nan]) == [pytest.approx(0.03), pytest.approx(0.06), pytest.approx(0.06),
                                                  pytest.approx(math.nan, nan_ok=True)]


def test_every_comparison_of_a_report_is_corrected_together(tmp_path):
    means = {"electra": 0.80, "bert": 0.80, "replace-mlm": 0.80, "scratch": 0.80}
    with two_level_store(tmp_path / "bench.db", means, runs=3, seeds=3, seed=1) as s:
        claims = pair_claims(comparison_table(s), "scratch")
    assert len(claims) == 6  # 3 pairs + 3 against the control
    assert {c.ci.family for c in claims} == {6}
    ps = [c.ci.p for c in claims]
    assert [c.ci.p_adjusted for c in claims] == pytest.approx(holm(ps))
    assert all("Holm-adjusted over the report's 6 comparisons" in c.sentence for c in claims)


def test_an_interval_that_excludes_zero_alone_is_not_claimed_after_correction(tmp_path):
    # one pair with p between 0.05/6 and 0.05 among 6 comparisons: the sentence says so instead of claiming it
    a, b = [[0.82, 0.83], [0.83, 0.84], [0.82, 0.83]], [[0.79, 0.80], [0.81, 0.82], [0.80, 0.81]]
    c = compare(a, b)
    assert 0.05 / 6 < c.p < 0.05 and c.excludes_zero
    from dataclasses import replace

    from bench.results.claims import claim_sentence

    adjusted = replace(c, p_adjusted=min(1.0, 6 * c.p), family=6)
    text = claim_sentence("electra", "bert", adjusted, where="sst2")
    assert adjusted.verdict == "same"
    assert "excludes 0 on its own, but not after correcting for the 6 comparisons" in text


# --- runs that did not learn --------------------------------------------------------------------------


def test_a_model_stuck_at_the_majority_class_is_named_and_never_enters_a_verdict(tmp_path):
    means = {"electra": 0.50, "bert": 0.78, "scratch": 0.77}
    with two_level_store(tmp_path / "bench.db", means, runs=2, seeds=3, stuck=("electra",)) as s:
        df = comparison_table(s)
        claims = pair_claims(df, "scratch")
        lines = verdict_lines(df, "scratch")
    row = df[df["model"] == "electra"].iloc[0]
    assert row["not_learned"] == "6/6: every dev prediction is one class"
    assert (df[df["model"] != "electra"]["not_learned"] == "").all()
    stuck = [c for c in claims if "electra" in (c.a, c.b)]
    assert stuck and all(c.verdict == "unknown" for c in stuck)  # no verdict for or against it
    for c in stuck:
        assert "no verdict, since electra did not learn the task in any fine-tuning run" in c.sentence
        assert "electra: 6/6 fine-tuning runs did not learn (every dev prediction is one class)" in c.sentence
    others = [c for c in claims if "electra" not in (c.a, c.b)]
    assert others and all(c.ci.family == len(others) for c in others)  # the stuck pairs are not in the family
    assert not any("bert is better" in line and "electra" in line for line in lines)


def test_some_runs_that_did_not_learn_are_left_out_and_named(tmp_path):
    with two_level_store(tmp_path / "bench.db", {"electra": 0.80, "bert": 0.79}, runs=2, seeds=3) as s:
        # one more electra seed that predicted one class, on run 0
        _finetune(s, "pt-electra-0", "electra", 3, 0.5092, learned=1)
        df = comparison_table(s)
        (c,) = pair_claims(df, None)
    assert df[df["model"] == "electra"].iloc[0]["not_learned"] == "1/7: every dev prediction is one class"
    assert c.ci.seeds_a == 6  # the 0.5092 run is not in the comparison
    assert "left out as runs that did not learn: electra: 1/7 fine-tuning runs did not learn" in c.sentence


def test_learning_check_one_class_baseline_and_learned():
    refs = np.array([0, 1] * 200)
    train = [1] * 60 + [0] * 40  # majority class 1
    one = learning_check(np.ones(400), refs, train, lambda p, r: float(np.mean(p == r)), regression=False)
    assert one["did_not_learn"] == 1 and one["pred_classes"] == 1 and one["trivial_score"] == 0.5
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 2, 400)  # guessing: two classes, at the baseline
    guess = learning_check(noise, refs, train, lambda p, r: float(np.mean(p == r)), regression=False)
    assert guess["did_not_learn"] == 3 and guess["pred_classes"] == 2
    good = refs.copy()
    good[:40] = 1 - good[:40]  # 90% right
    ok = learning_check(good, refs, train, lambda p, r: float(np.mean(p == r)), regression=False)
    assert ok["did_not_learn"] == 0 and ok["trivial_margin_se"] > 0
    flat = learning_check(np.full(400, 2.5), refs * 5.0, [1.0, 2.0], lambda p, r: float(np.corrcoef(p, r)[0, 1]),
                          regression=True)
    assert flat["did_not_learn"] == 2 and flat["trivial_score"] == 0.0  # an undefined correlation counts as 0


# --- power and the variance it rests on ----------------------------------------------------------------


def test_power_and_minimum_detectable_gap_agree():
    mde = min_detectable_gap(1.0, 5, 5)
    assert power(mde, 1.0, 5, 5) == pytest.approx(0.8, abs=1e-6)
    assert power(mde / 2, 1.0, 5, 5) < 0.8 < power(mde * 1.5, 1.0, 5, 5)
    # large samples: the normal approximation (z_0.975 + z_0.8) * sqrt(2 / n) = 2.8016 * sqrt(2 / n)
    assert min_detectable_gap(1.0, 400, 400) == pytest.approx(2.8016 * math.sqrt(2 / 400), rel=0.01)


def test_runs_needed_grows_with_pretraining_noise():
    few = runs_needed(0.01, 0.002, 0.01, 5)
    many = runs_needed(0.01, 0.01, 0.01, 5)
    assert few is not None and many is not None and few < many
    assert power(0.01, unit_sd(0.01, 0.01, 5), many, many) >= 0.8 > power(0.01, unit_sd(0.01, 0.01, 5), many - 1,
                                                                              many - 1)


def test_variance_components_recover_the_simulated_standard_deviations():
    rng = np.random.default_rng(3)
    groups = [[list(0.8 + o + rng.normal(0, 0.01, 6)) for o in rng.normal(0, 0.02, 40)] for _ in range(3)]
    v = variance_components(groups)
    assert v is not None and v.groups == 3
    assert v.sd_finetune == pytest.approx(0.01, rel=0.1) and v.sd_pretrain == pytest.approx(0.02, rel=0.2)


# --- bench plan --power ----------------------------------------------------------------------------------


def test_bench_plan_power_uses_the_stores_replicated_runs(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from bench.cli import main

    monkeypatch.chdir(tmp_path)  # no bench.toml: the defaults
    args = ["plan", "--models", "electra,bert", "--control", "none", "--task", "sst2", "--size", "tiny",
            "--pretrain-seeds", "3", "--seeds", "4", "--gap", "0.01"]
    out = CliRunner().invoke(main, args, catch_exceptions=False).output
    assert "plan: 6 pretraining and 24 fine-tuning runs" in out
    assert "3 pretraining run(s) per model x 4 fine-tuning seed(s) per run; 1 comparison(s)" in out
    assert "(defaults measured on tiny BERT, SST-2" in out  # no store yet: the documented defaults
    assert "smallest gap detected with 80% power" in out and "a true gap of 0.01 needs" in out
    (tmp_path / "results").mkdir()
    two_level_store(tmp_path / "results" / "bench.db", {"electra": 0.80, "bert": 0.80}, runs=6, seeds=4,
                    sd_pretrain=0.03, sd_finetune=0.005).close()
    measured = CliRunner().invoke(main, args, catch_exceptions=False).output
    assert "2 configuration(s) with replicated pretraining runs on sst2 (tiny)" in measured
    sd_p = float(measured.split("sd between pretraining runs ")[1].split(",")[0])
    assert 0.015 < sd_p < 0.05  # near the simulated 0.03, far from the default
    one = CliRunner().invoke(main, args[:9] + ["--power"], catch_exceptions=False).output  # 1 pretraining run
    assert "compares checkpoints and can claim nothing about the objectives" in one


# --- acceptance: replicated pretraining end to end ------------------------------------------------------------


def test_pretrain_seeds_end_to_end_every_frame_carries_the_pretraining_seed(micro_project, monkeypatch):
    import csv
    import io
    import sqlite3

    import pandas as pd
    from click.testing import CliRunner

    import bench
    from bench.cli import main

    monkeypatch.chdir(micro_project)
    r = CliRunner().invoke(main, ["run", "--quiet", "--pretrain-seeds", "2", "--seeds", "2"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    with sqlite3.connect(micro_project / "results" / "bench.db") as db:
        per_model = dict(db.execute("SELECT model, COUNT(*) FROM runs WHERE kind = 'pretrain' GROUP BY model"))
    assert per_model == {"electra": 2, "bert": 2, "scratch": 2}  # the control is replicated too (its init)
    assert "| pretrain_runs" in r.output.replace("  ", " ") or "pretrain_runs" in r.output
    rows = list(csv.DictReader(io.StringIO(CliRunner().invoke(main, ["report", "--format", "csv"]).output)))
    assert {(x["model"], x["pretrain_runs"], x["pretrain_seeds"], x["seeds"]) for x in rows} == {
        (m, "2", "0,1", "2") for m in ("electra", "bert", "scratch")}
    CliRunner().invoke(main, ["report", "--format", "parquet", "--out", "runs.parquet"], catch_exceptions=False)
    long = pd.read_parquet(micro_project / "runs.parquet")
    ft = long[long["kind"] == "finetune"]
    assert sorted(ft.groupby("model")["pretrain_seed"].nunique().tolist()) == [2, 2, 2]
    loaded = bench.load("results")
    assert set(loaded.runs[loaded.runs["kind"] == "pretrain"]["pretrain_seed"]) == {0, 1}
    claims = bench.report("results").claims
    assert (claims["pretrain_runs_a"] == 2).all() and set(claims["about"]) == {"objectives"}
