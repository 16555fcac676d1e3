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


ONE = ["run", "--quiet", "--executor", "slurm", "--models", "bert", "--control", "none", "--seeds", "1"]


def _no_accounting(tmp_path: Path, monkeypatch) -> None:
    """The driver's environment with the accounting stand-in (tests/slurm/sacct) removed: `sacct` is SLURM's own,
    which has no accounting database to ask on this cluster and fails."""
    import os

    folder = tmp_path / "no-accounting"
    folder.mkdir()
    real = Path("/usr/bin/sacct")
    (folder / "sacct").write_text(f"#!/bin/sh\nexec {real} \"$@\"\n" if real.exists() else "#!/bin/sh\nexit 1\n")
    (folder / "sacct").chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")  # bench_process passes os.environ on


def _wait_for_running_job(project: Path, driver, kind: str = "pretrain") -> str:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and driver.poll() is None:
        if (project / "results" / "bench.db").exists():
            try:
                job = next((r["job_id"] for r in _runs(project) if r["kind"] == kind and r["status"] == "running"),
                           None)
            except sqlite3.OperationalError:
                job = None
            if job:
                return job
        time.sleep(0.2)
    raise AssertionError(driver.communicate()[0] if driver.poll() is not None else "no job ran within 300 s")


@pytest.fixture
def lossy(project: Path) -> Path:
    with open(project / "bench.toml", "a", encoding="utf-8") as f:
        f.write("lost_after_s = 15\n")
    return project


def test_a_job_invisible_to_the_accounting_is_failed_after_the_grace_period_and_the_driver_exits(lossy, tmp_path,
                                                                                                 monkeypatch):
    """No accounting answer (the stand-in removed) and the job gone from squeue (cancelled): before, the
    driver waited forever; now the run is recorded failed as LOST after lost_after_s, and the driver exits."""
    _no_accounting(tmp_path, monkeypatch)
    driver = bench_process(ONE, lossy)
    job = _wait_for_running_job(lossy, driver)  # squeue answers while it runs
    subprocess.run(["scancel", job], check=True)
    cancelled_at = time.monotonic()
    out, _ = driver.communicate(timeout=300)
    waited = time.monotonic() - cancelled_at
    assert driver.returncode == 1, out
    row = next(r for r in _runs(lossy) if r["job_id"] == job)
    assert row["status"] == "failed" and row["error"].startswith(f"job {job} ended without a result (LOST"), row["error"]
    assert "lost_after_s = 15" in row["error"]
    assert 15 <= waited < 200, waited
    assert f"run {row['id']} failed: job {job} ended without a result (LOST" in out


def test_a_job_purged_from_the_scheduler_is_failed_after_the_grace_period(lossy):
    """A driver dies; its job is then unknown to SLURM (purged: neither the accounting stand-in nor squeue
    knows its id). The next driver adopts it, gives it lost_after_s, records it failed and exits."""
    import signal

    driver = bench_process(ONE, lossy)
    job = _wait_for_running_job(lossy, driver)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    subprocess.run(["scancel", job], check=True)
    purged = "4000000"  # an id this cluster never had: what a purged job looks like to the scheduler
    con = sqlite3.connect(lossy / "results" / "bench.db", timeout=30)
    with con:
        con.execute("UPDATE runs SET job_id = ? WHERE job_id = ?", (purged, job))
    con.close()
    out = subprocess.run(["scontrol", "-o", "show", "job", purged], capture_output=True, text=True)
    assert out.returncode != 0 or "JobId=" not in out.stdout  # SLURM does not know it
    again = run_bench(ONE, lossy, timeout=300)
    assert again.returncode == 1, again.stdout
    assert f"watching job {purged}" in again.stdout
    row = next(r for r in _runs(lossy) if r["job_id"] == purged)
    assert row["status"] == "failed" and row["error"].startswith(f"job {purged} ended without a result (LOST"), \
        row["error"]
