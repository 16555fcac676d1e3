"""Suites: named experiments beside the paper's numbers (bench/suite.py, bench/results/paper.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import main
from bench.config import load_experiment
from bench.errors import ConfigError
from bench.registry import MODELS
from bench.results.paper import Setting, ordering_sentence, paper_table, seed_scores, suite_lines
from bench.results.store import Metric, Store
from bench.results.tables import finetune_frame
from bench.runner import register_config_entries
from bench.suite import available_suites, load_suite, transitive

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
    assert "indicative" not in agree and "control" not in agree
    assert "small, 1.4e18 FLOPs" in agree and "tiny, 1.5e+13 FLOPs" in agree  # the paper's setting beside the run's
    against = ordering_sentence(_setting(electra=[70, 71, 72], bert=[80, 81, 82]), suite, None)
    assert "contradicts the paper's ordering at this budget (bert > electra)" in against
    assert "indicative only: 3 seeds per model; the paper takes the median of 10" in against
    noise = ordering_sentence(_setting(electra=[70, 75, 72], bert=[71, 74, 73], scratch=[71, 73, 74]), suite,
                              "scratch")
    assert "1 are within seed noise" in noise and "cannot tell whether the paper's ordering holds" in noise
    assert "no model beats the no-pretraining control (scratch)" in noise


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
    assert "(indicative only: 2 seeds per model" in text


def test_report_prints_the_suite_section(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    _store(results / "bench.db").close()
    out = CliRunner().invoke(main, ["report", "--results", str(results), "--suite", "paper-table1"])
    assert out.exit_code == 0, out.output
    assert "Clark et al. 2020 (ELECTRA), Table 1" in out.output and "| paper" in out.output
    assert "the paper orders electra > bert (1 pair); here 1 agree at the 95% level" in out.output
    assert "so the ordering agrees with the paper's (indicative only: 2 seeds per model" in out.output
