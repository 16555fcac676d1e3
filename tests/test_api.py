"""The Python API (bench.run, bench.report, bench.load): the README's notebook example end to end on a
synthetic corpus and task, the CLI's errors and skip-if-done, and `import bench` staying light."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import MICRO, TOY_TASK_TOML, write_corpus, write_task

import bench
from bench.cli import main
from bench.errors import BenchError, ConfigError, UnknownNameError

# The comparison table's documented columns (README "Python API"): a change here is a change of the API.
COLUMNS = ["model", "size", "task", "finetune", "budget_flops", "pretrain_steps", "pretrain_flops",
           "pretrain_flops_paper", "pretrain_flops_executed", "pretrain_wall_s", "tokens_per_s", "finetune_wall_s",
           "score_median", "score_min", "score_max", "pretrain_runs", "pretrain_seeds", "seeds", "not_learned", "also",
           "settings"]
RUNS_COLUMNS = ["run_id", "kind", "model", "task", "size", "budget", "seed", "parent_id", "status", "started_at",
                "finished_at", "wall_s", "git_sha", "code_version"]

BENCH_TOML = """
[run]
task = "toy"
data = "."

[data]
corpus = "synthetic"

""" + TOY_TASK_TOML

# What a user types in a notebook (the README's example), after registering the test-only `micro` preset.
SCRIPT = textwrap.dedent(f"""
    from models import sizes
    sizes.SIZES["micro"] = sizes.SizePreset(**{MICRO!r})  # test-only: a whole run in seconds

    import bench

    table = bench.run(["electra", "bert"], "toy", size="micro", seeds=2, results="results")
    print(table.to_string())
    assert list(table.columns) == {COLUMNS!r}, list(table.columns)
    assert sorted(table["model"]) == ["bert", "electra", "scratch"], table  # one row per model and the control
    assert (table["seeds"] == 2).all() and table["score_median"].between(0, 1).all()

    loaded = bench.load("results")
    runs = loaded.runs
    assert set(runs.columns) >= set({RUNS_COLUMNS!r}), list(runs.columns)
    assert len(runs) == 9 and (runs["status"] == "done").all(), runs
    assert sorted(runs[runs["kind"] == "pretrain"]["model"]) == ["bert", "electra", "scratch"]
    assert sorted(runs[runs["kind"] == "finetune"]["seed"]) == [0, 0, 0, 1, 1, 1]
    points = loaded.metrics.merge(runs, on="run_id")
    assert len(points) == len(loaded.metrics) > 0 and set(points["model"]) == {{"electra", "bert", "scratch"}}
    print("API OK")
""")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """A folder with a synthetic corpus and task, where the notebook script ran once (in a fresh process)."""
    root = tmp_path_factory.mktemp("api")
    write_corpus(root)
    write_task(root)
    (root / "bench.toml").write_text(BENCH_TOML, encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TQDM_DISABLE": "1"}
    proc = subprocess.run([sys.executable, "-"], input=SCRIPT, text=True, cwd=root, env=env, capture_output=True,
                          timeout=300)
    return root, proc


def test_notebook_script_runs_and_loads(trained):
    """Acceptance: bench.run on a tiny synthetic corpus and task -> the documented columns; bench.load -> the runs."""
    root, proc = trained
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "API OK" in proc.stdout
    assert (root / "results" / "bench.db").is_file()


def test_second_identical_run_trains_nothing(trained, micro_size, monkeypatch):
    root, proc = trained
    assert proc.returncode == 0, proc.stderr
    monkeypatch.chdir(root)
    before = bench.load("results").runs
    messages: list[str] = []
    table = bench.run("electra,bert", "toy", size="micro", seeds=2, results="results", echo=messages.append)
    after = bench.load("results").runs
    assert list(table.columns) == COLUMNS and sorted(table["model"]) == ["bert", "electra", "scratch"]
    # nothing new, nothing re-run: the same runs, finished at the same moments
    assert sorted(after["run_id"]) == sorted(before["run_id"])
    assert dict(zip(after["run_id"], after["finished_at"])) == dict(zip(before["run_id"], before["finished_at"]))
    assert messages == []
    # the CLI, a thin layer over the same call, says so and prints the same rows
    out = CliRunner().invoke(main, ["run", "--models", "electra,bert", "--size", "micro", "--seeds", "2", "--quiet"],
                             catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert "0 pretrained, 0 fine-tuned, 9 already in the store" in out.output
    from bench.results.formats.markdown import render

    assert render(table, "md") in out.output


def test_report_frames_and_self_contained_html(trained, tmp_path):
    root, proc = trained
    assert proc.returncode == 0, proc.stderr
    view = bench.report(root / "results")
    assert list(view.table.columns) == COLUMNS
    assert sorted(view.table["model"]) == ["bert", "electra", "scratch"]
    assert {"rank", "model", "size", "budget_flops", "score", "seeds"} <= set(view.leaderboard.columns)
    assert sorted(view.leaderboard["model"]) == ["bert", "electra", "scratch"]
    # three models on one task: three pairs (electra-bert, and each against the control)
    assert len(view.claims) == 3
    assert {"task", "model_a", "model_b", "gap", "ci_low", "ci_high", "verdict"} <= set(view.claims.columns)
    assert view.report.comparison is view.table

    path = view.to_html(tmp_path / "out" / "report.html")
    html = path.read_text(encoding="utf-8")
    assert path == tmp_path / "out" / "report.html"
    assert html.lstrip().lower().startswith("<!doctype html") and "data:image/png;base64," in html
    assert not re.search(r"""<(img|script|link|iframe)\b[^>]*\b(src|href)\s*=\s*['"]?(https?:|//)""", html, re.I)
    # the API's renderings are the CLI's output
    md = CliRunner().invoke(main, ["report", "--results", str(root / "results")], catch_exceptions=False)
    assert md.exit_code == 0 and md.output.rstrip("\n") == view.render("md").rstrip("\n")
    filtered = bench.report(root / "results", model=["electra", "bert"], control="none")
    assert sorted(filtered.table["model"]) == ["bert", "electra"] and len(filtered.claims) == 1


def test_bad_input_raises_the_cli_error_and_writes_nothing(micro_project, monkeypatch):
    monkeypatch.chdir(micro_project)
    with pytest.raises(UnknownNameError) as exc:
        bench.run(["electra", "bret"], "toy", size="micro", results="results")
    assert "unknown model 'bret'" in str(exc.value) and "Did you mean" in str(exc.value) and "'bert'" in str(exc.value)
    cli = CliRunner().invoke(main, ["run", "--models", "electra,bret", "--size", "micro"])
    assert cli.exit_code == 2 and cli.output.strip() == f"error: {exc.value}"  # the very same one line
    with pytest.raises(ConfigError, match="Did you mean pretrain__precision"):
        bench.run(["electra"], "toy", size="micro", pretrain__precison="fp32")
    with pytest.raises(ConfigError, match="epochs"):
        bench.run(["electra"], "toy", size="micro", epochs=0)
    with pytest.raises(ConfigError, match="seeds"):
        bench.run(["electra"], "toy", size="micro", seeds=0)
    # trackers reach [run] trackers as the CLI's --tracker does (checked before any work)
    with pytest.raises(ConfigError, match=r"--tracker: unknown tracker 'mlfow'\. Did you mean 'mlflow'\?") as exc:
        bench.run(["electra"], "toy", size="micro", trackers=["tensorboard", "mlfow"])
    cli = CliRunner().invoke(main, ["run", "--models", "electra", "--size", "micro", "--tracker", "tensorboard",
                                    "--tracker", "mlfow"])
    assert cli.exit_code == 2 and cli.output.strip() == f"error: {exc.value}"
    assert not (micro_project / "results").exists()  # nothing written: no store, no run folder
    for call in (bench.report, bench.load):
        with pytest.raises(BenchError, match="no results store at results/bench.db: run `bench run` first"):
            call("results")
    assert not (micro_project / "results").exists()  # reading never creates a store


def test_parquet_needs_out_and_writes_one_row_per_run(trained, tmp_path, monkeypatch):
    root, proc = trained
    assert proc.returncode == 0, proc.stderr
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["report", "--results", str(root / "results"), "--format", "parquet"])
    assert r.exit_code == 2 and r.output.startswith("error: --format parquet") and "--out" in r.output
    assert len(r.output.strip().splitlines()) == 1
    pytest.importorskip("pyarrow", reason="parquet needs pyarrow: pip install pyarrow")
    import pandas as pd

    path = bench.report(root / "results").write("parquet", tmp_path / "runs.parquet")
    assert len(pd.read_parquet(path)) == 9


def test_import_bench_is_light():
    code = ("import sys, bench; f = bench.run, bench.report, bench.load; "
            "heavy = sorted({'torch', 'pandas', 'transformers', 'numpy'} & set(sys.modules)); "
            "assert not heavy, heavy; print('light')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "light" in proc.stdout, proc.stderr


def test_bench_report_imports_no_training_code(trained):
    """`bench report` (markdown, csv, json) reads the store without torch, transformers, datasets or bench.runner,
    and without pandas, pyarrow or matplotlib: those cost half a second of every report
    (benchmarks/report_speed.py)."""
    root, proc = trained
    assert proc.returncode == 0, proc.stderr
    code = textwrap.dedent(f"""
        import sys
        from bench.cli import main
        for fmt in ("md", "csv", "json"):
            try:
                main(["report", "--results", {str(root / "results")!r}, "--format", fmt])
            except SystemExit as exc:
                assert not exc.code, exc.code
        heavy = sorted({{"torch", "transformers", "datasets", "bench.runner", "pandas", "pyarrow", "matplotlib"}}
                       & set(sys.modules))
        assert not heavy, heavy
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "| electra" in proc.stdout and "model,size,task" in proc.stdout and '"model": "electra"' in proc.stdout
