"""Suites: named experiments beside the paper's numbers (bench/suite.py, bench/results/paper.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import main
from bench.config import load_experiment
from bench.errors import ConfigError
from bench.registry import MODELS
from bench.plan import plan_experiment
from bench.results.paper import Setting, ordering_sentence, paper_table, seed_scores, setting_line, suite_lines
from bench.results.store import Metric, Store
from bench.results.tables import finetune_frame
from bench.runner import register_config_entries
from bench.suite import available_suites, load_suite, transitive
from bench.train.budget import parse_budget
from models.sizes import SIZES

SUITES = ("paper-table1", "paper-table5", "paper-figure3", "mask-rate")


@pytest.fixture(autouse=True)
def _here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./bench.toml: the suite alone


def test_the_four_suites_ship_and_resolve_to_registered_models():
    assert set(SUITES) <= set(available_suites())
    for name in SUITES:
        exp = load_experiment(suite=name)
        register_config_entries(exp)  # variants such as bert-mask40 and electra-gen-half
        suite = load_suite(name)
        assert exp.task == "glue" and exp.control == "scratch" and exp.suite == name
        for model in exp.models:
            MODELS.get(model)
        assert suite.description and suite.reproduces
        assert set(suite.paper) <= set(exp.models)
    table5 = load_suite("paper-table5")
    assert table5.paper == {"electra": 85.0, "all-tokens-mlm": 84.3, "replace-mlm": 82.4, "electra-15": 82.4,
                            "bert": 82.2}
    assert load_experiment(suite="paper-table1").curve is True
    assert load_suite("paper-table1").paper_curve["electra"][0.0625] == 74.1
    opts = load_experiment(suite="mask-rate").backend_options("bert-mask40")
    assert opts == {"mask_prob": 0.4}


def test_flags_override_the_suite_and_the_suite_overrides_bench_toml(tmp_path):
    Path("bench.toml").write_text('[run]\nmodels = ["bert"]\nseeds = 7\n[data]\nmax_documents = 50\n')
    exp = load_experiment(overrides={"seeds": 2, "size": "tiny"}, suite="paper-table5")
    assert exp.seeds == 2 and exp.size == "tiny"  # flags win
    assert exp.models[0] == "electra" and len(exp.models) == 5  # the suite's models over bench.toml's
    assert exp.data_settings.max_documents == 50  # bench.toml's data settings stay


def test_unknown_suite_is_a_one_line_error_with_the_known_names():
    result = CliRunner().invoke(main, ["run", "--suite", "paper-tabel5"])
    assert result.exit_code == 2
    assert "Did you mean 'paper-table5'?" in result.output and "mask-rate" in result.output
    assert "Traceback" not in result.output


def test_a_suite_file_naming_a_model_it_does_not_run_is_an_error(tmp_path):
    bad = tmp_path / "mine.toml"
    bad.write_text('[suite]\ndescription = "d"\nreproduces = "r"\nordering = ["electra > bret"]\n'
                   '[run]\nmodels = ["electra", "bert"]\n')
    with pytest.raises(ConfigError, match=r"mine.toml: \[suite\] names 'bret', not among run.models"):
        load_suite(str(bad))
    plain = tmp_path / "plain.toml"
    plain.write_text('[run]\nmodels = ["electra"]\n')
    with pytest.raises(ConfigError, match="needs a \\[suite\\] table"):
        load_suite(str(plain))


def test_ordering_is_closed_transitively():
    assert set(transitive([("a", "b"), ("b", "c")])) == {("a", "b"), ("b", "c"), ("a", "c")}


def _setting(**scores: list[float]) -> Setting:
    return Setting("tiny", 1.5e13, ("cola", "mrpc", "sst2"), {k.replace("_", "-"): v for k, v in scores.items()})


def test_ordering_sentence_agrees_contradicts_or_cannot_tell():
    suite = load_suite("paper-table1")  # the paper: electra > bert
    agree = ordering_sentence(_setting(electra=[80, 81, 82, 81, 80], bert=[70, 71, 72, 71, 70],
                                       scratch=[60, 61, 60, 61, 60]), suite, "scratch")
    assert "1 agree at the 95% level" in agree and "the ordering agrees with the paper's" in agree
    assert "with 1 pretraining run per model this compares checkpoints, not objectives" in agree
    assert "control" not in agree and "Holm over 3 comparisons" in agree
    assert "small, 1.4e18 FLOPs" in agree and "tiny, 1.5e+13 FLOPs" in agree  # the paper's setting beside the run's
    against = ordering_sentence(_setting(electra=[70, 71, 72], bert=[80, 81, 82]), suite, None)
    assert "contradicts the paper's ordering at this budget (bert > electra)" in against
    assert "this compares checkpoints, not objectives" in against
    noise = ordering_sentence(_setting(electra=[70, 75, 72], bert=[71, 74, 73], scratch=[71, 73, 74]), suite,
                              "scratch")
    assert "1 are within noise" in noise and "cannot tell whether the paper's ordering holds" in noise
    assert "no model beats the no-pretraining control (scratch)" in noise


def test_ordering_over_replicated_pretraining_runs_is_about_objectives_and_skips_non_learners():
    suite = load_suite("paper-table1")
    runs = {"electra": [[80, 81], [81, 82], [80, 82]], "bert": [[70, 71], [71, 72], [70, 70]]}
    st = Setting("tiny", 1.5e13, ("sst2",), {m: [x for r in rs for x in r] for m, rs in runs.items()}, runs=runs)
    text = ordering_sentence(st, suite, None)
    assert "1 agree at the 95% level (Holm over 1 comparison)" in text and "compares checkpoints" not in text
    stuck = Setting("tiny", 1.5e13, ("sst2",), {"electra": [50.9] * 4, "bert": [70, 71, 72, 71]},
                    runs={"electra": [[], []], "bert": [[70, 71], [72, 71]]})
    text = ordering_sentence(stuck, suite, None)
    assert "1 cannot be judged" in text and "left out, as no fine-tuning run of theirs learned the task: electra" in text


def _store(path: Path) -> Store:
    """Two GLUE tasks x two seeds for three models: electra best, then bert, then the control."""
    store = Store(path)
    env = {"device": "cpu"}
    for model, base, pretrains in (("electra", 0.80, True), ("bert", 0.70, True), ("scratch", 0.50, False)):
        pid = f"pt-{model}"
        budget = 1e13 if pretrains else 0.0
        store.claim(pid, kind="pretrain", model=model, spec={"model": model, "pretrains": pretrains, "external": None,
                                                             "convention": "paper"},
                    code_version="c", size="tiny", budget=budget, git_sha="g", environment=env)
        store.finish(pid, [Metric("steps", 10 if pretrains else 0), Metric("flops_paper", budget)])
        for task, shift in (("sst2", 0.0), ("cola", -0.4)):
            for seed, d in enumerate((-0.01, 0.01)):
                fid = f"ft-{model}-{task}-{seed}"
                score = base + shift + d
                metric = "matthews_correlation" if task == "cola" else "accuracy"
                store.claim(fid, kind="finetune", model=model, spec={"fraction": 1.0, "settings": {}},
                            code_version="c", task=task, size="tiny", budget=budget, seed=seed, parent_id=pid,
                            git_sha="g", environment=env)
                store.finish(fid, [Metric("score", score), Metric(f"metric_{metric}", score),
                                   Metric("fraction", 1.0)])
    return store


def test_paper_column_and_seed_averages_from_a_store(tmp_path):
    with _store(tmp_path / "bench.db") as store:
        ft = finetune_frame(store)
    (st,) = seed_scores(ft)
    assert st.tasks == ("cola", "sst2")
    # per seed: the average of the paper's GLUE metric over the two tasks, x100
    assert st.scores["electra"] == pytest.approx([100 * (0.79 + 0.39) / 2, 100 * (0.81 + 0.41) / 2])
    assert st.scores["scratch"] == pytest.approx([100 * (0.49 + 0.09) / 2, 100 * (0.51 + 0.11) / 2])
    table = paper_table([st], load_suite("paper-table1"), ["electra", "bert", "scratch"])
    assert list(table["model"]) == ["electra", "bert", "scratch"]
    assert list(table["paper"].fillna(-1)) == [79.9, 75.1, -1]
    text = "\n".join(suite_lines(ft, load_suite("paper-table1"), "scratch"))
    assert "| paper" in text and "79.9" in text and "the paper orders electra > bert" in text
    assert "(with 1 pretraining run per model this compares checkpoints" in text


def test_report_prints_the_suite_section(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    _store(results / "bench.db").close()
    out = CliRunner().invoke(main, ["report", "--results", str(results), "--suite", "paper-table1"])
    assert out.exit_code == 0, out.output
    assert "Clark et al. 2020 (ELECTRA), Table 1" in out.output and "| paper" in out.output
    assert "the paper orders electra > bert (1 pair); here 1 agree at the 95% level" in out.output
    assert "so the ordering agrees with the paper's (with 1 pretraining run per model this compares" in out.output


# --- the tiny preset serves the default job; suites size themselves ([size.<preset>]) ----------------------


def test_the_tiny_preset_is_sized_for_the_default_job():
    tiny = SIZES["tiny"]
    assert tiny.budget_flops == 1.5e13 and tiny.finetune_max_train == 20000
    plan = plan_experiment(load_experiment(overrides={"models": "electra,bert", "task": "sst2", "size": "tiny"}))
    assert plan.budget.value == 1.5e13
    assert {f.settings["max_train_examples"] for f in plan.finetune_runs} == {20000}


@pytest.mark.parametrize("name", SUITES)
def test_a_suites_size_table_applies_at_that_size_only(name, monkeypatch):
    tiny = plan_experiment(load_experiment(overrides={"size": "tiny"}, suite=name), tasks=("sst2",))
    assert tiny.budget.value == 8e12
    assert {f.settings["max_train_examples"] for f in tiny.finetune_runs} == {5000}
    small = load_experiment(overrides={"size": "small"}, suite=name)
    assert small.budget is None and small.finetune.max_train_examples is None  # the small preset's own
    # no --size: the size the run will use (bench.plan.default_size: tiny without a GPU, small with one)
    monkeypatch.setattr("bench.plan.default_size", lambda: "tiny")
    assert load_experiment(suite=name).budget == 8e12
    monkeypatch.setattr("bench.plan.default_size", lambda: "small")
    assert load_experiment(suite=name).budget is None
    Path("bench.toml").write_text('[run]\nsize = "tiny"\n')  # the size from bench.toml
    assert load_experiment(suite=name).budget == 8e12


def test_flags_win_over_the_suites_size_table_which_wins_over_bench_toml():
    Path("bench.toml").write_text('[run]\nbudget = 9e12\n[finetune]\nmax_train_examples = 100\n')
    exp = load_experiment(overrides={"size": "tiny"}, suite="paper-table5")
    assert exp.budget == 8e12 and exp.finetune.max_train_examples == 5000  # the suite's, over bench.toml's
    exp = load_experiment(overrides={"size": "tiny", "budget": "3e13", "seeds": 2,
                                     "finetune__max_train_examples": 700}, suite="paper-table5")
    assert exp.budget == "3e13" and exp.seeds == 2 and exp.finetune.max_train_examples == 700
    assert load_experiment(overrides={"size": "tiny"}).budget == 9e12  # no suite: bench.toml's


def _suite_file(tmp_path: Path, size_tables: str) -> str:
    path = tmp_path / "mine.toml"
    path.write_text('[suite]\ndescription = "d"\nreproduces = "r"\n[run]\nmodels = ["electra", "bert"]\n'
                    + size_tables)
    return str(path)


def test_a_size_table_holds_the_four_keys_and_checks_them(tmp_path):
    ok = _suite_file(tmp_path, '[size.small]\nbudget = "electra-small@1%"\nseeds = 2\nepochs = 2\n'
                               'max_train_examples = 0\n')
    exp = load_experiment(overrides={"size": "small"}, suite=ok)
    assert (exp.budget, exp.seeds, exp.finetune.epochs, exp.finetune.max_train_examples) == (
        "electra-small@1%", 2, 2.0, 0)
    cases = [
        ('[size.tiny]\nbudgett = 1e13\n', r"mine.toml, line 7: unknown key size.tiny.budgett. Did you mean 'budget'\? "
                                           r"Valid keys in \[size.tiny\]: budget, seeds, epochs, max_train_examples"),
        ('[size.tiny]\nmax_train = 10\n', r"mine.toml, line 7: unknown key size.tiny.max_train. Did you mean "
                                           r"'max_train_examples'\?"),
        ('[size.tinny]\nbudget = 1e13\n', r"mine.toml, line 6: \[size.tinny\] names no size preset. Did you mean "
                                           r"\[size.tiny\]\? Size presets: tiny, small, base"),
        ('[size.tiny]\nseeds = 0\n', r"mine.toml, line 7: run.seeds = 0 is out of range"),
        ('[size.tiny]\nmax_train_examples = "many"\n', r"mine.toml, line 7: `size.tiny.max_train_examples` must be an "
                                                        r"integer"),
        ('[size.tiny]\nbudget = "lots"\n', r"mine.toml, line 7: size.tiny.budget: cannot read budget 'lots'"),
        ('[size]\ntiny = 3\n', r"mine.toml, line 6: `size` holds one table per size preset"),
    ]
    for tables, message in cases:
        with pytest.raises(ConfigError, match=message):
            load_experiment(overrides={"size": "tiny"}, suite=_suite_file(tmp_path, tables))


# --- like for like: the measured average, BERT's masking, the budget's total, every report format ----------


def _scores_store(path: Path, scores: dict[str, dict[str, list[float]]]) -> Store:
    """A store with the given per-seed dev scores: model -> GLUE task -> one score per seed (accuracy)."""
    store = Store(path)
    env = {"device": "cpu"}
    for model, tasks in scores.items():
        pid = f"pt-{model}"
        store.claim(pid, kind="pretrain", model=model, spec={"model": model, "pretrains": True, "external": None,
                                                             "convention": "paper"},
                    code_version="c", size="tiny", budget=1e13, git_sha="g", environment=env)
        store.finish(pid, [Metric("steps", 10), Metric("flops_paper", 1e13)])
        for task, per_seed in tasks.items():
            for seed, score in enumerate(per_seed):
                fid = f"ft-{model}-{task}-{seed}"
                store.claim(fid, kind="finetune", model=model, spec={"fraction": 1.0, "settings": {}},
                            code_version="c", task=task, size="tiny", budget=1e13, seed=seed, parent_id=pid,
                            git_sha="g", environment=env)
                store.finish(fid, [Metric("score", score), Metric("metric_accuracy", score), Metric("fraction", 1.0)])
    return store


def test_the_measured_score_averages_per_task_medians_over_the_tasks_present(tmp_path):
    # per seed the averages are 45, 55, 45 (median 45); the paper's way, mean of the task medians (80, 30), is 55
    with _scores_store(tmp_path / "bench.db", {"electra": {"sst2": [0.9, 0.8, 0.0], "mrpc": [0.0, 0.3, 0.9]},
                                               "bert": {"sst2": [0.5, 0.5, 0.5], "mrpc": [0.5, 0.5, 0.5]}}) as store:
        ft = finetune_frame(store)
    settings = seed_scores(ft)
    table = paper_table(settings, load_suite("paper-table1"), ["electra", "bert"])
    electra = table.set_index("model").loc["electra"]
    assert electra["measured"] == pytest.approx(55.0)
    assert (electra["min"], electra["max"]) == (pytest.approx(0.0), pytest.approx(90.0))  # mean of task min / max
    assert electra["tasks"] == "2 GLUE tasks"
    text = "\n".join(suite_lines(ft, load_suite("paper-table1"), None, models=["electra", "bert"]))
    assert "| measured (2 GLUE tasks)" in text and "| paper (8 GLUE tasks)" in text
    assert "| electra | tiny   | 1e+13          | 55.0 " in text
    assert ("measured: the mean over the tasks run here, 2 GLUE tasks (mrpc, sst2), of each task's median over "
            "seeds") in text and "paper: the published GLUE dev score, averaged over 8 GLUE tasks" in text


def test_paper_table1_trains_bert_with_the_authors_masking():
    from models.bert import MASKINGS

    exp = load_experiment(overrides={"size": "tiny"}, suite="paper-table1")
    assert exp.backend_options("bert") == {"masking": "authors"} and MASKINGS["authors"] == (0.85, 0.0)
    runs = {r.model: r for r in plan_experiment(exp, tasks=("sst2",)).pretrain_runs}
    assert runs["bert"].options == {"masking": "authors"} and runs["electra"].options == {}
    assert load_experiment(overrides={"size": "tiny"}, suite="paper-table5").backend_options("bert") == {}


def test_a_share_of_a_paper_run_is_a_share_of_the_total_the_suites_table_gives():
    suite = load_suite("paper-table1")
    assert suite.reference_flops == {"electra-small": 1.4e18, "bert-small": 1.4e18}
    exp = load_experiment(overrides={"size": "small", "budget": "electra-small@6.25%"}, suite="paper-table1")
    assert exp.budget == pytest.approx(8.75e16)
    assert plan_experiment(exp, tasks=("sst2",)).budget.value == pytest.approx(8.75e16)
    # elsewhere the same name is a share of the harness's own count of that run
    assert parse_budget("electra-small@6.25%").value != pytest.approx(8.75e16)
    assert load_experiment(overrides={"budget": "electra-small@6.25%"}).budget == "electra-small@6.25%"
    executed = load_experiment(overrides={"size": "small", "budget": "electra-small@6.25%",
                                          "budget_convention": "executed"}, suite="paper-table1")
    assert executed.budget == "electra-small@6.25%"
    # and the suite's section says which total it used
    assert "is a share of the total the paper gives for it: electra-small 1.4e18, bert-small 1.4e18 FLOPs" in \
        setting_line(suite)
    st = Setting("small", 8.75e16, ("cola", "sst2"), {"electra": [80, 81], "bert": [70, 71]})
    assert "small, 8.75e+16 FLOPs (paper convention; 6.25% of the paper's 1.4e18 FLOPs)" in \
        ordering_sentence(st, suite, None)


def test_report_with_a_suite_carries_the_paper_column_in_every_format(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    _store(results / "bench.db").close()

    def report(*args: str) -> str:
        out = CliRunner().invoke(main, ["report", "--results", str(results), *args])
        assert out.exit_code == 0, out.output
        return out.output

    import csv
    import io
    import json

    rows = list(csv.DictReader(io.StringIO(report("--suite", "paper-table1", "--format", "csv"))))
    assert {r["model"]: r["paper"] for r in rows} == {"electra": "79.9", "bert": "75.1", "scratch": ""}
    assert "paper" not in report("--format", "csv").splitlines()[0].split(",")  # without a suite: no column
    objs = json.loads(report("--suite", "paper-table1", "--format", "json"))
    assert {o["model"]: o["paper"] for o in objs} == {"electra": 79.9, "bert": 75.1, "scratch": None}
    pytest.importorskip("pyarrow", reason="parquet needs pyarrow")
    import pandas as pd

    report("--suite", "paper-table1", "--format", "parquet", "--out", str(tmp_path / "runs.parquet"))
    frame = pd.read_parquet(tmp_path / "runs.parquet")
    by_model = frame.groupby("model")["paper"].agg(lambda v: set(v.fillna(-1)))
    assert by_model.to_dict() == {"electra": {79.9}, "bert": {75.1}, "scratch": {-1}}


def test_report_with_a_suite_resolves_no_size_and_loads_no_torch(tmp_path):
    """The suite's models are all `bench report --suite` needs: its size tables (and the machine's default
    size, which needs torch) stay unread."""
    import subprocess
    import sys
    import textwrap

    results = tmp_path / "results"
    results.mkdir()
    _store(results / "bench.db").close()
    code = textwrap.dedent(f"""
        import sys
        from bench.cli import main
        try:
            main(["report", "--results", {str(results)!r}, "--suite", "paper-table1", "--format", "csv"])
        except SystemExit as exc:
            assert not exc.code, exc.code
        heavy = sorted({{"torch", "transformers", "bench.plan", "bench.runner"}} & set(sys.modules))
        assert not heavy, heavy
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].endswith(",paper")
