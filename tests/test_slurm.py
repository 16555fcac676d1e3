"""`bench run --executor slurm` against a real one-node SLURM cluster (tests/slurm/cluster.sh).

No fake sbatch: these tests skip unless a cluster answers, and CI starts one.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from conftest import bench_process, run_bench

pytest.importorskip("submitit", reason="submitit is not installed (pip install submitit)")


def _cluster_up() -> bool:
    if shutil.which("sbatch") is None:
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return any(state.strip() in ("idle", "mix", "alloc") for state in out.splitlines())


pytestmark = pytest.mark.skipif(not _cluster_up(), reason="no SLURM cluster answers here: start one with "
                                "`tests/slurm/cluster.sh start` (root; installs slurm-wlm and munge)")

ARGS = ["run", "--quiet", "--executor", "slurm", "--models", "electra,bert", "--control", "none", "--seeds", "2"]


@pytest.fixture
def project(micro_project: Path) -> Path:
    with open(micro_project / "bench.toml", "a", encoding="utf-8") as f:
        f.write("\n[executor]\npoll_s = 0.5\ntime_limit_min = 30\n")
    return micro_project


def _runs(project: Path) -> list[sqlite3.Row]:
    con = sqlite3.connect(project / "results" / "bench.db", timeout=30)
    con.row_factory = sqlite3.Row
    return con.execute("SELECT * FROM runs ORDER BY kind, model, seed").fetchall()


def test_a_sweep_on_slurm_survives_a_cancelled_job_and_status_shows_its_jobs(project):
    """2 models x 2 seeds as SLURM jobs; one pretraining job is cancelled with scancel while it runs:
    its run fails with the reason, the rest completes, and the next `bench run` resubmits it."""
    driver = bench_process(ARGS, project)
    job = None
    deadline = time.monotonic() + 300
    while job is None and time.monotonic() < deadline and driver.poll() is None:
        if (project / "results" / "bench.db").exists():
            try:
                job = next((r["job_id"] for r in _runs(project) if r["kind"] == "pretrain" and r["status"] == "running"),
                           None)
            except sqlite3.OperationalError:
                pass
        time.sleep(0.1)
    assert job, driver.communicate()[0]
    subprocess.run(["scancel", job], check=True)
    out, _ = driver.communicate(timeout=900)
    assert driver.returncode == 1, out
    cancelled = next(r for r in _runs(project) if r["job_id"] == job)
    assert cancelled["status"] == "failed" and cancelled["error"].startswith(f"job {job} ended without a result")
    assert "CANCELLED" in cancelled["error"] or "SIGTERM" in cancelled["error"], cancelled["error"]
    assert f"run {cancelled['id']} failed: job {job} ended without a result" in out
    assert "4 submitted as jobs" in out  # its two fine-tuning runs were never submitted

    again = run_bench(ARGS, project, timeout=900)
    assert again.returncode == 0, again.stdout
    assert "1 pretrained, 2 fine-tuned, 3 already in the store, 1 retried after a failed or dead attempt, " \
           "3 submitted as jobs" in again.stdout
    runs = _runs(project)
    assert len(runs) == 6 and all(r["status"] == "done" and r["job_id"] and r["node"] for r in runs)
    resubmitted = next(r for r in runs if r["id"] == cancelled["id"])
    assert resubmitted["attempts"] == 2 and resubmitted["job_id"] != job  # a new job
    status = run_bench(["status", "--all"], project)
    assert status.returncode == 0 and "6 done" in status.stdout
    for r in runs:  # each row's job is one SLURM knows, and ran to its end
        assert r["job_id"] in status.stdout
        shown = subprocess.run(["scontrol", "-o", "show", "job", r["job_id"]], capture_output=True, text=True).stdout
        assert "JobState=COMPLETED" in shown, shown
