"""Runs as jobs: `bench run --executor local` (submitit's local executor, real processes).

The driver alone writes the store; a job returns its metrics. Killing the driver loses
nothing: the next `bench run` collects the jobs still running instead of submitting them
again, which the test checks by counting submissions (submitit leaves one file per job).
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from conftest import bench_process, run_bench

pytest.importorskip("submitit", reason="submitit is not installed (pip install submitit)")

ARGS = ["run", "--quiet", "--executor", "local", "--models", "electra,bert", "--control", "none", "--seeds", "2"]


@pytest.fixture
def sweep(micro_project: Path) -> Path:
    with open(micro_project / "bench.toml", "a", encoding="utf-8") as f:
        f.write("\n[executor]\npoll_s = 0.5\n")
    return micro_project


def _runs(project: Path) -> list[sqlite3.Row]:
    con = sqlite3.connect(project / "results" / "bench.db", timeout=30)
    con.row_factory = sqlite3.Row
    return con.execute("SELECT * FROM runs ORDER BY kind, model, seed").fetchall()


def _submissions(project: Path) -> int:
    return len(list((project / "results" / "jobs").glob("*_submitted.pkl")))


def test_a_local_sweep_survives_its_driver_killed_and_submits_nothing_twice(sweep):
    """2 models x 2 seeds as 6 local jobs; SIGKILL the driver mid-sweep; a second driver collects."""
    driver = bench_process(ARGS, sweep)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and driver.poll() is None:
        if (sweep / "results" / "bench.db").exists():
            try:
                rows = _runs(sweep)
            except sqlite3.OperationalError:
                rows = []
            states = [r["status"] for r in rows]
            # mid-sweep, with every run in flight already handed to a job (the driver is between
            # submissions; see README: a kill inside the few ms of one submission can repeat it)
            held = [r for r in rows if r["status"] in ("queued", "running")]
            if "done" in states and held and all(r["job_id"] for r in held):
                break
        time.sleep(0.1)
    assert driver.poll() is None, driver.communicate()[0]
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    before = _submissions(sweep)
    assert 0 < before < 6 or any(r["status"] != "done" for r in _runs(sweep))  # killed mid-sweep
    again = run_bench(ARGS, sweep)
    assert again.returncode == 0, again.stdout
    runs = _runs(sweep)
    assert len(runs) == 6 and all(r["status"] == "done" for r in runs)
    assert _submissions(sweep) == 6  # every job submitted exactly once, across both drivers
    jobs = {p.name.split("_")[0] for p in (sweep / "results" / "jobs").glob("*_submitted.pkl")}
    assert {r["job_id"] for r in runs} == jobs  # each run's result came from its one job
    # a run the first driver had claimed but not yet submitted counts a second attempt, nothing more
    assert all(r["attempts"] in (1, 2) for r in runs), [tuple(r) for r in runs]
    assert "2 pretrained, 4 fine-tuned" not in again.stdout  # the first driver's finished jobs were not redone
    status = run_bench(["status", "--all"], sweep)
    assert status.returncode == 0 and "6 done" in status.stdout
    assert all(r["job_id"] in status.stdout for r in runs)
    rerun = run_bench(ARGS, sweep)
    assert "0 pretrained, 0 fine-tuned, 6 already in the store" in rerun.stdout and _submissions(sweep) == 6


def test_a_job_of_two_processes_is_one_ddp_run_that_rank_0_reports(sweep):
    """--processes-per-job 2: each job is two submitit tasks (a 2-process DDP run); the driver
    takes rank 0's result and the store holds one row per run, as with one process."""
    r = run_bench(["run", "--quiet", "--executor", "local", "--processes-per-job", "2", "--models", "bert",
                   "--control", "none", "--seeds", "1"], sweep)
    assert r.returncode == 0, r.stdout
    rows = _runs(sweep)
    assert [(x["kind"], x["status"]) for x in rows] == [("finetune", "done"), ("pretrain", "done")]
    jobs = sweep / "results" / "jobs"
    pretrain_job = rows[1]["job_id"]
    assert (jobs / f"{pretrain_job}_0_result.pkl").exists() and (jobs / f"{pretrain_job}_1_result.pkl").exists()
    assert "global_rank=1(2)" in (jobs / f"{pretrain_job}_1_log.out").read_text()
    # the store says where each run ran: the job's environment, its two processes included
    assert [json.loads(x["environment"])["processes"] for x in rows] == [2, 2]


# --- a driver that never waits forever (a fake scheduler here; tests/test_slurm.py uses a real one) -------


def _fake_scheduler(tmp_path: Path, monkeypatch, sacct: str, squeue: str = "") -> Path:
    """srun, sacct, squeue and scancel stand-ins on PATH: sacct prints `sacct` (after its header), squeue `squeue`;
    scancel records the ids it was asked to cancel."""
    import os

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {"srun": "exit 0", "sacct": f"echo 'JobID|State|NodeList'\nprintf '{sacct}'",
               "squeue": f"printf '{squeue}'", "scancel": f'echo "$1" >> {bin_dir}/cancelled'}
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return bin_dir


def _slurm_executor(results: Path, lost_after_s: float = 300.0):
    from bench.config import ExecutorSettings
    from bench.executors import JobExecutor

    ex = JobExecutor(ExecutorSettings(kind="slurm", lost_after_s=lost_after_s), results)
    now = [1000.0]
    ex.clock = lambda: now[0]
    return ex, now


def test_a_job_the_scheduler_no_longer_knows_is_failed_after_the_grace_period(tmp_path, monkeypatch):
    bin_dir = _fake_scheduler(tmp_path, monkeypatch, sacct="")  # no accounting answer, not in squeue
    ex, now = _slurm_executor(tmp_path / "results", lost_after_s=300)
    assert ex.status("77", "pt-a").state == "queued"  # UNKNOWN: perhaps not visible yet
    now[0] += 299
    assert ex.status("77", "pt-a").state == "queued"
    now[0] += 2
    status = ex.status("77", "pt-a")
    assert status.state == "failed" and status.detail.startswith("LOST") and "lost_after_s = 300" in status.detail
    assert "77" in (bin_dir / "cancelled").read_text()  # in case it still runs somewhere


def test_squeue_answers_for_a_job_the_accounting_does_not_know(tmp_path, monkeypatch):
    _fake_scheduler(tmp_path, monkeypatch, sacct="", squeue="RUNNING|node-1\\n")
    ex, now = _slurm_executor(tmp_path / "results", lost_after_s=10)
    now[0] += 3600
    assert ex.status("78", "pt-a") == ex.status("78", "pt-a")
    assert ex.status("78", "pt-a").state == "running" and ex.status("78", "pt-a").node == "node-1"


def test_a_known_state_resets_the_clock_and_a_completed_job_waits_for_its_result_file(tmp_path, monkeypatch):
    _fake_scheduler(tmp_path, monkeypatch, sacct="79|COMPLETED|node-1\\n79.batch|COMPLETED|node-1\\n")
    ex, now = _slurm_executor(tmp_path / "results", lost_after_s=60)
    assert ex.status("79", "pt-a").state == "running"  # COMPLETED, its result file not seen yet
    now[0] += 61
    status = ex.status("79", "pt-a")
    assert status.state == "failed" and "COMPLETED, but no result file" in status.detail


def test_a_run_whose_job_is_lost_is_recorded_failed_and_the_driver_goes_on(tmp_path, monkeypatch):
    """The runner's side: a lost job's run is failed in the store with the reason, and the loop ends."""
    from bench.executors import JobStatus
    from bench.results.store import Store
    from bench.runner import Runner, RunSummary

    store = Store(tmp_path / "bench.db")
    store.claim("ft-x", kind="finetune", model="bert", spec={}, code_version="v")
    store.mark_queued("ft-x", "80")

    class Lost:
        def status(self, job_id, run_id):
            return JobStatus("failed", None, "LOST: the scheduler has had no answer for it for 301 s")

        def failure(self, job_id, detail):
            return f"job {job_id} ended without a result ({detail})"

    runner = Runner.__new__(Runner)
    runner.store, runner.executor, runner.summary, runner._gave_up = store, Lost(), RunSummary(), set()
    runner._inflight = {"ft-x": (object(), "80")}
    runner.echo = lambda message: None
    assert runner._collect_jobs() and not runner._inflight
    row = store.run("ft-x")
    assert row["status"] == "failed" and row["error"].startswith("job 80 ended without a result (LOST")
    assert runner.summary.failed and "ft-x" in runner._gave_up


def test_executors_and_runner_import_one_way():
    """bench.executors sits below bench.runner: it imports bench.entries for the config entries, never the runner."""
    import ast

    root = Path(__file__).resolve().parent.parent
    tree = ast.parse((root / "bench" / "executors.py").read_text(encoding="utf-8"))
    names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "bench.runner" not in names and "bench.entries" in names
    for module in ("export", "merge"):  # the new capability adds no upward import
        tree = ast.parse((root / "bench" / "results" / f"{module}.py").read_text(encoding="utf-8"))
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert all(m.startswith(("bench.results", "bench.errors")) for m in imported if m.startswith("bench")), imported
