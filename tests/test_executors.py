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
