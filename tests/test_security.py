"""What the harness loads is data, never code: safetensors and JSON, no pickle, no remote code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted(p for pkg in ("bench", "models", "tasks", "benchmarks") for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=[p.relative_to(ROOT).as_posix() for p in SOURCES])
def test_no_code_is_loaded_from_data(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for call in re.findall(r"torch\.load\([^)]*\)", text):
        assert "weights_only=True" in call, f"{path}: {call} may unpickle code"
    for call in re.findall(r"np\.load\([^)]*\)", text):
        assert "allow_pickle=False" in call, f"{path}: {call} should refuse pickles"
    assert not re.search(r"trust_remote_code\s*=\s*True", text), f"{path}: runs a checkpoint's own code"
    assert not re.search(r"^\s*(import pickle|from pickle|import dill|import joblib)", text, re.M), path
    assert "torch.save(" not in text, f"{path}: writes a pickle; use safetensors"


def test_the_scan_sees_the_code() -> None:
    assert len(SOURCES) > 30 and any(p.name == "resume.py" for p in SOURCES)


# --- the executor's driver reads each job's result as checked JSON, never a pickle -------------------------

PWNED = "pwned-by-a-pickle"


class _Exploit:
    """Unpickling this runs code: it creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (Path.write_text, (self.marker, PWNED))


def _executor(results: Path, kind: str = "local", **settings):
    pytest.importorskip("submitit", reason="submitit is not installed (pip install submitit)")
    from bench.config import ExecutorSettings
    from bench.executors import JobExecutor

    return JobExecutor(ExecutorSettings(kind=kind, **settings), results)


def _plant_pickles(jobs: Path, job_id: str, marker: Path) -> list[Path]:
    """A malicious pickle everywhere submitit would keep a job's result (another user's write, say)."""
    import pickle

    payload = pickle.dumps(_Exploit(marker))
    paths = [jobs / f"{job_id}_result.pkl", jobs / f"{job_id}_0_result.pkl"]
    for p in paths:
        p.write_bytes(payload)
    return paths


@pytest.fixture
def no_unpickling(monkeypatch):
    """Any unpickling in the driver's read path fails the test loudly (and the marker shows it ran)."""
    import pickle

    def refuse(*args, **kwargs):
        raise AssertionError("the driver unpickled a file")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    try:
        import cloudpickle

        monkeypatch.setattr(cloudpickle, "load", refuse, raising=False)
        monkeypatch.setattr(cloudpickle, "loads", refuse, raising=False)
    except ImportError:
        pass


def test_the_exploit_does_run_code_when_unpickled(tmp_path):
    """The planted pickle is a real exploit: loading it writes the marker (so its absence below means something)."""
    import pickle

    marker = tmp_path / "marker"
    pickle.loads(pickle.dumps(_Exploit(marker)))
    assert marker.read_text() == PWNED


def test_the_driver_reads_the_json_result_and_never_a_pickled_one(tmp_path, no_unpickling):
    from bench.worker import RunResult, write_job_result
    from bench.results.store import Metric

    ex = _executor(tmp_path / "results")
    marker = tmp_path / "marker"
    job_id, run_id = "4242", "pt-abc"
    _plant_pickles(ex.folder, job_id, marker)
    write_job_result(ex.result_file(job_id, run_id), run_id=run_id, job_id=job_id,
                     result=RunResult([Metric("steps", 3), Metric("loss", 1.5, step=1, flops=2.0, wall_s=0.1)],
                                      ["careful"], False, {"host": "node-1"}))
    assert ex.status(job_id, run_id).state == "finished"
    got = ex.result(job_id, run_id)
    assert [m.name for m in got.metrics] == ["steps", "loss"] and got.environment == {"host": "node-1"}
    assert not marker.exists()


def test_a_job_without_a_json_result_fails_and_its_pickle_stays_unread(tmp_path, no_unpickling):
    from bench.executors import JobFailed

    ex = _executor(tmp_path / "results")
    marker = tmp_path / "marker"
    job_id, run_id = "999999999", "pt-abc"  # no such process: the job is gone
    _plant_pickles(ex.folder, job_id, marker)
    status = ex.status(job_id, run_id)
    assert status.state == "failed" and "GONE" in status.detail
    with pytest.raises(JobFailed, match="no result file"):
        ex.result(job_id, run_id)
    # a pickle put where the JSON result goes is not read as one either
    ex.result_file(job_id, run_id).parent.mkdir(parents=True, exist_ok=True)
    ex.result_file(job_id, run_id).write_bytes((ex.folder / f"{job_id}_result.pkl").read_bytes())
    with pytest.raises(JobFailed, match="not JSON"):
        ex.result(job_id, run_id)
    assert not marker.exists()


def test_a_result_file_for_another_run_or_not_a_result_is_refused(tmp_path):
    import json

    from bench.executors import JobFailed
    from bench.worker import write_job_result

    ex = _executor(tmp_path / "results")
    write_job_result(ex.result_file("7", "pt-a"), run_id="pt-b", job_id="7", error="boom")
    with pytest.raises(JobFailed, match="is for run 'pt-b'"):
        ex.result("7", "pt-a")
    path = ex.result_file("8", "pt-a")
    path.write_text(json.dumps({"format": 1, "run_id": "pt-a", "job_id": "8", "result": {"metrics": [["x", "1"]]}}))
    with pytest.raises(JobFailed, match="not a valid result"):
        ex.result("8", "pt-a")
    write_job_result(ex.result_file("9", "pt-a"), run_id="pt-a", job_id="9",
                     error="Traceback (most recent call last):\n  ...\nValueError: diverged")
    with pytest.raises(JobFailed, match=r"\(FAILED\): ValueError: diverged"):
        ex.result("9", "pt-a")


@pytest.mark.parametrize("kind", ["local", "slurm"])
@pytest.mark.parametrize("which", ["results", "jobs"])
def test_a_folder_others_can_write_is_refused_unless_allowed(tmp_path, kind, which, monkeypatch):
    from bench.errors import ConfigError

    if kind == "slurm":  # submitit's SLURM executor wants srun on PATH; the check comes before it anyway
        fake = tmp_path / "bin"
        fake.mkdir()
        (fake / "srun").write_text("#!/bin/sh\nexit 0\n")
        (fake / "srun").chmod(0o755)
        monkeypatch.setenv("PATH", f"{fake}:{__import__('os').environ['PATH']}")
    results = tmp_path / "results"
    (results / "jobs").mkdir(parents=True)
    (results / which if which == "jobs" else results).chmod(0o775)
    with pytest.raises(ConfigError, match=r"writable by its group.*allow_shared_folder = true.*\[executor\]"):
        _executor(results, kind)
    (results / which if which == "jobs" else results).chmod(0o757)
    with pytest.raises(ConfigError, match="writable by others"):
        _executor(results, kind)
    _executor(results, kind, allow_shared_folder=True)  # the user's documented opt-in


@pytest.mark.parametrize("kind", ["local", "slurm"])
def test_bench_run_with_an_executor_refuses_a_group_writable_results_folder(micro_project, kind):
    pytest.importorskip("submitit", reason="submitit is not installed (pip install submitit)")
    from conftest import run_bench

    results = micro_project / "results"
    results.mkdir()
    results.chmod(0o775)
    r = run_bench(["run", "--quiet", "--executor", kind, "--models", "bert", "--control", "none", "--seeds", "1"],
                  micro_project)
    assert r.returncode == 2, r.stdout
    assert "writable by its group" in r.stdout and "allow_shared_folder = true" in r.stdout, r.stdout
    assert not (results / "jobs").exists() or not list((results / "jobs").iterdir())  # nothing submitted


def test_the_executor_module_never_asks_submitit_for_a_pickled_result():
    text = (ROOT / "bench" / "executors.py").read_text(encoding="utf-8")
    code = "\n".join(line for line in text.splitlines() if not line.strip().startswith(("#", '"""')))
    assert not re.search(r"\.results?\(\s*\)", code), "job.result() unpickles the job's result file"
    assert "result_pickle" not in code and "pickle.load" not in code
