"""The runner: failures recorded, divergence stops a run, two processes share one store."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.backend import BackendOutput
from bench.cli import main
from bench.registry import MODELS
from bench.results.store import Store
from conftest import bench_process
from models.bert import BertBackend


def invoke(args, cwd, monkeypatch):
    monkeypatch.chdir(cwd)
    return CliRunner().invoke(main, args, catch_exceptions=False)


@pytest.fixture
def throwaway_model():
    """Register a model for one test, and remove it after."""
    added = []

    def register(name, cls):
        MODELS.add(name, cls, description=f"test-only {name}", source="test")
        added.append(name)
        return cls

    yield register
    for name in added:
        MODELS.remove(name)


def _runs(results: Path) -> list[sqlite3.Row]:
    con = sqlite3.connect(results / "bench.db")
    con.row_factory = sqlite3.Row
    return con.execute("SELECT * FROM runs ORDER BY kind, model, seed").fetchall()


def test_a_nan_loss_stops_the_run_and_nothing_is_finetuned_on_it(micro_project, monkeypatch, throwaway_model):
    class NanAfterFive(BertBackend):
        calls = 0

        def loss(self, batch):
            out = super().loss(batch)
            type(self).calls += 1
            return BackendOutput(out.loss * math.nan, out.metrics) if self.calls > 5 else out

    throwaway_model("nanbert", NanAfterFive)
    (micro_project / "bench.toml").write_text((micro_project / "bench.toml").read_text().replace(
        "[data]", "[pretrain]\nresume_every_steps = 2\n\n[data]"))
    r = invoke(["run", "--quiet", "--models", "nanbert,bert", "--seeds", "1"], micro_project, monkeypatch)
    assert r.exit_code == 1, r.output
    assert "pretraining diverged at step 6: the loss became nan" in r.output
    assert "Likely cause: the learning rate is too high" in r.output and "lower pretrain.lr" in r.output
    assert "Traceback" not in r.output
    # the table keeps the failed row, with the reason where its score would be
    row = next(line for line in r.output.splitlines() if line.startswith("| nanbert"))
    assert "pretraining diverged at step 6" in row
    assert next(line for line in r.output.splitlines() if line.startswith("| bert")).count("|") == row.count("|")

    runs = {(x["kind"], x["model"]): x for x in _runs(micro_project / "results")}
    failed = runs[("pretrain", "nanbert")]
    assert failed["status"] == "failed" and failed["error"].startswith("pretraining diverged at step 6")
    assert "last logged: loss " in failed["error"] and "mlm_loss" in failed["error"]
    assert ("finetune", "nanbert") not in runs  # nothing depends on a diverged encoder
    assert runs[("finetune", "bert")]["status"] == "done" and runs[("finetune", "scratch")]["status"] == "done"
    state = micro_project / "results" / "runs" / failed["id"] / "resume" / "state.json"
    saved = json.loads(state.read_text())["loop"]["step"]
    assert 2 <= saved < 6  # a state from before the NaN is kept, and the message says which
    assert f"The resume state from step {saved}, before it, is kept." in failed["error"]


def test_an_exploding_learning_rate_is_caught_as_divergence(micro_project, monkeypatch):
    r = invoke(["run", "--quiet", "--models", "bert", "--control", "none", "--seeds", "1", "--config", "bench.toml"],
               micro_project, monkeypatch)
    assert r.exit_code == 0  # the same project trains fine at its own learning rate
    toml = micro_project / "bench.toml"
    toml.write_text(toml.read_text().replace("[data]", "[pretrain]\nlr = 1e12\n\n[data]"))
    r = invoke(["run", "--quiet", "--models", "bert", "--control", "none", "--seeds", "1"], micro_project, monkeypatch)
    assert r.exit_code == 1 and "pretraining diverged at step" in r.output, r.output


def test_a_crash_is_recorded_with_its_traceback_and_the_rest_goes_on(micro_project, monkeypatch, throwaway_model):
    class Broken(BertBackend):
        def loss(self, batch):
            raise RuntimeError("boom inside the backend")

    throwaway_model("broken", Broken)
    r = invoke(["run", "--quiet", "--models", "broken,bert", "--seeds", "1"], micro_project, monkeypatch)
    assert r.exit_code == 1
    assert "RuntimeError: boom inside the backend (recorded; re-run to retry)" in r.output
    runs = {(x["kind"], x["model"]): x for x in _runs(micro_project / "results")}
    broken = runs[("pretrain", "broken")]
    assert broken["status"] == "failed" and "Traceback" in broken["error"] and "boom inside" in broken["error"]
    assert runs[("finetune", "bert")]["status"] == "done"
    # the report lists it as a run without a result
    rep = invoke(["report"], micro_project, monkeypatch)
    assert "## Runs without a result" in rep.output and "RuntimeError: boom inside the backend" in rep.output
    # a re-run retries it, as attempt 2
    r = invoke(["run", "--quiet", "--models", "broken,bert", "--seeds", "1"], micro_project, monkeypatch)
    assert r.exit_code == 1 and "1 retried after a failed or dead attempt" in r.output
    assert {(x["kind"], x["model"]): x for x in _runs(micro_project / "results")}[("pretrain", "broken")]["attempts"] == 2


def test_ctrl_c_inside_a_run_is_recorded_as_interrupted(micro_project, monkeypatch, throwaway_model):
    class CtrlC(BertBackend):
        def loss(self, batch):
            raise KeyboardInterrupt

    throwaway_model("ctrlc", CtrlC)
    monkeypatch.chdir(micro_project)
    r = CliRunner().invoke(main, ["run", "--quiet", "--models", "ctrlc", "--control", "none"])
    assert r.exit_code == 130 and "interrupted by SIGINT" in r.output and "re-run the same command" in r.output
    (run,) = _runs(micro_project / "results")
    assert run["status"] == "failed" and run["error"].startswith("interrupted")


def test_two_processes_on_one_store_run_each_run_once(micro_project):
    with open(micro_project / "bench.toml", "a", encoding="utf-8") as f:
        f.write("\n[executor]\npoll_s = 0.5\n")  # look again at the other process's runs twice a second
    a = bench_process(["run", "--quiet"], micro_project)
    b = bench_process(["run", "--quiet"], micro_project)
    out_a, _ = a.communicate(timeout=600)
    out_b, _ = b.communicate(timeout=600)
    assert a.returncode == 0, out_a
    assert b.returncode == 0, out_b
    runs = _runs(micro_project / "results")
    assert len(runs) == 3 + 6 and all(r["status"] == "done" for r in runs)
    assert [r["attempts"] for r in runs] == [1] * 9  # each run claimed, hence started, exactly once
    done = [tuple(int(x) for x in _counts(out)) for out in (out_a, out_b)]
    assert sum(d[0] for d in done) == 3 and sum(d[1] for d in done) == 6, (out_a, out_b)
    for out in (out_a, out_b):  # each prints the whole comparison, the other's runs included
        assert all(f"| {m}" in out for m in ("electra", "bert", "scratch"))
    with Store(micro_project / "results" / "bench.db") as s:
        s.check_integrity()
    leftovers = [p for p in (micro_project / "results").rglob("*") if ".tmp" in p.name]
    assert leftovers == []


def _counts(out: str) -> tuple[str, str]:
    import re

    m = re.search(r"(\d+) pretrained, (\d+) fine-tuned", out)
    assert m, out
    return m.group(1), m.group(2)
