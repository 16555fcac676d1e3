"""The CLI end to end on a synthetic corpus and task, and its error messages."""

from __future__ import annotations

import csv
import io
import re
import json
import sqlite3

import pytest
from click.testing import CliRunner

from bench.cli import main
from bench.results.tables import COLUMNS


def invoke(args, cwd, monkeypatch):
    monkeypatch.chdir(cwd)
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_run_end_to_end_then_rerun_skips(micro_project, monkeypatch):
    r = invoke(["run", "--quiet"], micro_project, monkeypatch)
    assert r.exit_code == 0, r.output
    header = next(line for line in r.output.splitlines() if line.startswith("| model"))
    assert [c.strip() for c in header.strip("|").split("|")] == COLUMNS
    for model in ("electra", "bert", "scratch"):
        assert f"| {model}" in r.output
    assert "3 pretrained, 6 fine-tuned" in r.output

    db = micro_project / "results" / "bench.db"
    con = sqlite3.connect(db)
    counts = dict(con.execute("SELECT kind, count(*) FROM runs WHERE status='done' GROUP BY kind").fetchall())
    assert counts == {"pretrain": 3, "finetune": 6}
    data_walls = [v for (v,) in con.execute("SELECT value FROM metrics WHERE name = 'data_wall_s'")]
    assert len(data_walls) == 3 and all(v > 0 for v in data_walls)  # preparing the corpus is timed, once
    env = json.loads(con.execute("SELECT environment FROM runs LIMIT 1").fetchone()[0])
    assert env["code_version"].startswith("src-") and "torch" in env["packages"]

    # matched compute: both within one step of the budget and of each other
    out = invoke(["report", "--format", "csv"], micro_project, monkeypatch)
    rows = {row["model"]: row for row in csv.DictReader(io.StringIO(out.output))}
    budget = float(rows["electra"]["budget_flops"])
    for m in ("electra", "bert"):
        spent = float(rows[m]["pretrain_flops"])
        per_step = spent / int(rows[m]["pretrain_steps"])
        assert budget <= spent < budget + per_step
    assert float(rows["scratch"]["pretrain_flops"]) == 0.0
    for row in rows.values():
        assert 0.0 <= float(row["score_min"]) <= float(row["score_median"]) <= float(row["score_max"]) <= 1.0
        assert row["seeds"] == "2"
        assert float(row["score_median"]) >= 0.9  # the toy task is learnable: fine-tuning really trains

    again = invoke(["run", "--quiet"], micro_project, monkeypatch)
    assert again.exit_code == 0 and "0 pretrained, 0 fine-tuned, 9 already in the store" in again.output
    md = invoke(["report"], micro_project, monkeypatch)
    assert "| electra" in md.output and "| bert" in md.output


def test_unknown_model_lists_registered(micro_project, monkeypatch):
    r = invoke(["run", "--models", "electra,nosuch"], micro_project, monkeypatch)
    assert r.exit_code != 0
    assert "nosuch" in r.output and "electra" in r.output and "bert" in r.output and "scratch" in r.output
    assert not (micro_project / "results" / "bench.db").exists()  # nothing written


def test_unknown_task_did_you_mean(micro_project, monkeypatch):
    r = invoke(["run", "--task", "sst3"], micro_project, monkeypatch)
    assert r.exit_code != 0 and "unknown task 'sst3'" in r.output and "Did you mean 'sst2'" in r.output


def test_malformed_toml(micro_project, monkeypatch):
    (micro_project / "bench.toml").write_text('[run]\nmodels = ["electra"\n', encoding="utf-8")
    r = invoke(["run"], micro_project, monkeypatch)
    assert r.exit_code != 0 and re.search(r"bench\.toml, line \d+: malformed TOML", r.output)


def test_unknown_size(micro_project, monkeypatch):
    r = invoke(["run", "--size", "huge"], micro_project, monkeypatch)
    assert r.exit_code != 0 and "unknown size preset 'huge'" in r.output and "tiny" in r.output


def test_list_shows_models_tasks_sizes(micro_project, monkeypatch):
    r = invoke(["list"], micro_project, monkeypatch)
    assert r.exit_code == 0
    for name in ("electra", "bert", "scratch", "sst2", "toy", "tiny", "small", "base"):
        assert name in r.output


def test_report_without_store(tmp_path, monkeypatch):
    r = invoke(["report", "--results", str(tmp_path / "none")], tmp_path, monkeypatch)
    assert r.exit_code != 0 and "no results store" in r.output


@pytest.mark.parametrize("model", ["electra", "bert"])
def test_flops_json_has_total(model, tmp_path, monkeypatch):
    r = invoke(["flops", "--model", model, "--size", "tiny", "--steps", "10", "--batch", "4", "--json"],
               tmp_path, monkeypatch)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["total"] > 0


def test_time_budget_matches_wall_clock_and_records_flops(micro_project, monkeypatch):
    r = invoke(["run", "--quiet", "--models", "bert", "--control", "none", "--budget", "2s", "--seeds", "1"],
               micro_project, monkeypatch)
    assert r.exit_code == 0, r.output
    con = sqlite3.connect(micro_project / "results" / "bench.db")
    (run_id, budget, spec), = con.execute("SELECT id, budget, spec FROM runs WHERE kind='pretrain'").fetchall()
    assert budget is None and json.loads(spec)["budget"] == {"kind": "time", "value": 2.0, "text": "2s"}
    m = dict(con.execute("SELECT name, value FROM metrics WHERE run_id=? AND step IS NULL", (run_id,)).fetchall())
    assert m["wall_s"] >= 2.0 and m["steps"] >= 1 and m["budget_s"] == 2.0
    assert m["flops_paper"] == pytest.approx(m["steps"] * m["flops_per_step_paper"])
    saved = sorted(p.name for p in (micro_project / "results" / "runs" / run_id).iterdir())
    assert saved == ["ckpt-0.0625", "ckpt-0.125", "ckpt-0.25", "ckpt-0.5", "ckpt-1"]


def test_path_checkpoint_and_own_pretraining_in_one_table(micro_project, monkeypatch):
    r = invoke(["run", "--quiet", "--models", "bert", "--control", "none", "--seeds", "1"], micro_project, monkeypatch)
    assert r.exit_code == 0, r.output
    ckpt = next((micro_project / "results" / "runs").glob("pt-*/ckpt-1"))
    r = invoke(["run", "--quiet", "--models", f"bert,path:{ckpt}", "--control", "none", "--seeds", "1"],
               micro_project, monkeypatch)
    assert r.exit_code == 0, r.output
    assert "1 fine-tuned, 1 already in the store" in r.output or "1 fine-tuned, 2 already" in r.output
    rows = {row["model"]: row for row in csv.DictReader(io.StringIO(
        invoke(["report", "--format", "csv"], micro_project, monkeypatch).output))}
    assert set(rows) == {"bert", f"path:{ckpt}"}
    # the same encoder through both paths, fine-tuned with the same seed: the same score
    assert rows["bert"]["score_median"] == rows[f"path:{ckpt}"]["score_median"]


def test_missing_path_checkpoint_is_a_clear_error(micro_project, monkeypatch):
    r = invoke(["run", "--quiet", "--models", "path:/no/such/dir", "--control", "none"], micro_project, monkeypatch)
    assert r.exit_code != 0 and "/no/such/dir" in r.output


def test_uncached_hub_checkpoint_is_a_clear_error_before_any_run(micro_project, monkeypatch):
    r = invoke(["run", "--quiet", "--models", "bert,hf:no-such-org/no-such-electra"], micro_project, monkeypatch)
    assert r.exit_code != 0
    assert "no-such-org/no-such-electra" in r.output and "hub cache" in r.output
    con = sqlite3.connect(micro_project / "results" / "bench.db")
    assert con.execute("SELECT count(*) FROM runs").fetchone() == (0,)  # nothing started


def test_pair_and_regression_tasks_from_bench_toml(micro_project, monkeypatch):
    rows = ["premise,hypothesis,label,similarity"]
    for i in range(48):
        same = i % 2 == 0
        a = f"alpha beta sigma {'tau' if i % 3 else 'pi'}"
        b = a if same else "gamma delta zeta eta"
        rows.append(f"{a},{b},{'same' if same else 'different'},{4.5 if same else 0.5}")
    folder = micro_project / "pairs"
    folder.mkdir()
    (folder / "train.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (folder / "dev.csv").write_text("\n".join(rows[:21]) + "\n", encoding="utf-8")
    with open(micro_project / "bench.toml", "a", encoding="utf-8") as f:
        f.write('\n[tasks.pairs]\nadapter = "csv"\ntrain = "pairs/train.csv"\ndev = "pairs/dev.csv"\n'
                'text = ["premise", "hypothesis"]\nlabel = "label"\n'
                '\n[tasks.similarity]\nadapter = "csv"\ntrain = "pairs/train.csv"\ndev = "pairs/dev.csv"\n'
                'text = ["premise", "hypothesis"]\nlabel = "similarity"\n')
    for task in ("pairs", "similarity"):
        r = invoke(["run", "--quiet", "--models", "bert", "--control", "none", "--seeds", "1", "--task", task],
                   micro_project, monkeypatch)
        assert r.exit_code == 0, r.output
    con = sqlite3.connect(micro_project / "results" / "bench.db")
    metrics = {(task, name) for task, name in con.execute(
        "SELECT r.task, m.name FROM runs r JOIN metrics m ON m.run_id = r.id WHERE r.kind = 'finetune'")}
    assert ("pairs", "metric_accuracy") in metrics
    assert ("similarity", "metric_pearson") in metrics and ("similarity", "metric_spearmanr") in metrics
    assert con.execute("SELECT count(*) FROM runs WHERE kind='pretrain'").fetchone() == (1,)  # shared


def test_options_for_an_unknown_model_name_the_table(micro_project, monkeypatch):
    with open(micro_project / "bench.toml", "a", encoding="utf-8") as f:
        f.write("\n[models.electar]\ndisc_weight = 10\n")
    r = invoke(["run", "--quiet"], micro_project, monkeypatch)
    assert r.exit_code != 0 and "[models.electar]" in r.output and "Did you mean 'electra'" in r.output


def test_unknown_model_error_names_the_flag(micro_project, monkeypatch):
    r = invoke(["run", "--models", "electra,nosuch"], micro_project, monkeypatch)
    assert "unknown model 'nosuch' (in --models)" in r.output
