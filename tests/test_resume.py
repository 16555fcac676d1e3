"""Resumable pretraining: a run killed at any step continues to bit-identical weights."""

from __future__ import annotations

import random
import signal
import sqlite3
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bench.results.store import Metric, Store
from conftest import TOY_TASK_TOML, bench_process, run_bench, write_corpus, write_task

TOML = """
[run]
models = ["electra"]
task = "toy"
size = "micro"
results = "{results}"
data = "."
control = ""
seeds = 1
budget = 5e10
[data]
corpus = "synthetic"
[pretrain]
resume_every_steps = 4
[finetune]
epochs = 1
""" + TOY_TASK_TOML


@pytest.fixture
def resume_project(tmp_path: Path) -> Path:
    write_corpus(tmp_path)
    write_task(tmp_path)
    for name in ("ref", "killed"):
        (tmp_path / f"{name}.toml").write_text(TOML.format(results=name), encoding="utf-8")
    return tmp_path


def _pretrain_run(results: Path) -> dict:
    with Store(results / "bench.db") as s:
        (run,) = s.runs(kind="pretrain", status=None)
        return run


def _series(results: Path, run_id: str) -> dict[str, list[Metric]]:
    with Store(results / "bench.db") as s:
        names = [r[0] for r in s._conn.execute("SELECT DISTINCT name FROM metrics WHERE run_id = ? AND step IS NOT "
                                               "NULL", (run_id,))]
        return {n: [(m.step, m.value, m.flops) for m in s.series(run_id, n)] for n in names}


def _weights(results: Path, run_id: str, fraction: str) -> dict[str, torch.Tensor]:
    return load_file(str(results / "runs" / run_id / f"ckpt-{fraction}" / "model.safetensors"))


def _wait_for_a_resume_state(results: Path, child) -> None:
    """Until `child` has written a resume state (a new one, where an earlier attempt left one)."""
    def stamps() -> set[tuple[str, int]]:
        found = set()
        for p in results.glob("runs/*/resume/state.json"):
            try:
                found.add((str(p), p.stat().st_mtime_ns))
            except FileNotFoundError:  # the run finished and removed its state meanwhile
                pass
        return found

    before = stamps()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and child.poll() is None and not stamps() - before:
        time.sleep(0.02)
    assert child.poll() is None, child.communicate()[0]


def test_sigkill_at_a_random_step_then_rerun_gives_bit_identical_weights(resume_project):
    ref = run_bench(["run", "--quiet", "--config", "ref.toml"], resume_project)
    assert ref.returncode == 0, ref.stdout
    ref_run = _pretrain_run(resume_project / "ref")
    steps = int(Store(resume_project / "ref" / "bench.db").final_metrics(ref_run["id"])["steps"])
    assert steps > 60 and ref_run["attempts"] == 1

    # kill with SIGKILL somewhere after the first resume state and before the end
    child = bench_process(["run", "--quiet", "--config", "killed.toml"], resume_project)
    _wait_for_a_resume_state(resume_project / "killed", child)
    time.sleep(random.Random(8).uniform(0.0, 1.5))
    child.send_signal(signal.SIGKILL)
    child.wait()
    killed = _pretrain_run(resume_project / "killed")
    assert killed["id"] == ref_run["id"] and killed["status"] == "running"  # killed mid-run, its claim left behind

    again = run_bench(["run", "--quiet", "--config", "killed.toml"], resume_project)
    assert again.returncode == 0, again.stdout
    assert "1 resumed from a resume state" in again.stdout
    run = _pretrain_run(resume_project / "killed")
    assert run["status"] == "done" and run["attempts"] == 2
    metrics = Store(resume_project / "killed" / "bench.db").final_metrics(run["id"])
    assert metrics["steps"] == steps and 0 < metrics["resumed_from_step"] < steps
    for fraction in ("0.0625", "0.5", "1"):  # checkpoints before and after the kill
        a, b = _weights(resume_project / "ref", run["id"], fraction), _weights(resume_project / "killed", run["id"],
                                                                                fraction)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), fraction
    assert _series(resume_project / "ref", run["id"]) == _series(resume_project / "killed", run["id"])
    assert not (resume_project / "killed" / "runs" / run["id"] / "resume").exists()  # done: state removed
    # and the fine-tuning on top scored the same
    con_a = sqlite3.connect(resume_project / "ref" / "bench.db")
    con_b = sqlite3.connect(resume_project / "killed" / "bench.db")
    q = "SELECT value FROM metrics JOIN runs ON runs.id = run_id WHERE kind = 'finetune' AND name = 'score'"
    assert con_a.execute(q).fetchall() == con_b.execute(q).fetchall()


def test_sigint_saves_the_state_and_exits_130_and_sigterm_143(resume_project):
    for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        results = resume_project / "killed"
        child = bench_process(["run", "--quiet", "--config", "killed.toml"], resume_project)
        _wait_for_a_resume_state(results, child)
        child.send_signal(sig)
        out, _ = child.communicate(timeout=120)
        assert child.returncode == code, out
        assert f"interrupted by {sig.name}" in out and "re-run the same command to continue" in out
        assert "Traceback" not in out
        run = _pretrain_run(results)
        state = results / "runs" / run["id"] / "resume"
        names = sorted(p.name for p in state.iterdir())  # safetensors and JSON, nothing pickled, no leftovers
        assert len(names) == 2 and names[0].startswith("state-") and names[0].endswith(".safetensors")
        assert names[1] == "state.json"
        assert run["status"] == "failed" and f"interrupted by {sig.name}" in run["error"]
        assert "resume state is saved" in run["error"]
        with Store(results / "bench.db") as s:
            s.check_integrity()
    again = run_bench(["run", "--quiet", "--config", "killed.toml"], resume_project)
    assert again.returncode == 0 and "1 resumed from a resume state" in again.stdout, again.stdout
    assert _pretrain_run(resume_project / "killed")["attempts"] == 3
