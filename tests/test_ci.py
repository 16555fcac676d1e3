"""CI cannot skip what it exists to test: under CI=true, .ci/run fails when Chromium cannot be installed or the
one-node SLURM cluster does not start; elsewhere those tests skip with the reason (.ci/setup.sh)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / ".ci" / "run"


def _setup_portion() -> str:
    """.ci/run's lines from sourcing .ci/setup.sh to the tests, run as .ci/run runs them (set -euo pipefail)."""
    lines = RUN.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == ". .ci/setup.sh")
    end = next(i for i, line in enumerate(lines) if "python -m pytest" in line)
    return "set -euo pipefail\n" + "\n".join(lines[start:end]) + "\necho REACHED-THE-TESTS\n"


def _bin(tmp_path: Path, **scripts: str) -> Path:
    """A PATH of its own: the few real commands the set-up uses, and stand-ins."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in ("bash", "id", "cat", "dirname"):
        if (real := shutil.which(tool)):
            (folder / tool).symlink_to(real)
    for name, body in scripts.items():
        (folder / name).write_text(f"#!/bin/sh\n{body}\n")
        (folder / name).chmod(0o755)
    return folder


def _run(tmp_path: Path, ci: bool, **scripts: str) -> subprocess.CompletedProcess:
    fake_cluster = tmp_path / "cluster.sh"
    fake_cluster.write_text("echo 'slurmctld: fatal: cannot start' >&2\nexit 1\n")
    env = {"PATH": str(_bin(tmp_path, **scripts)), "BENCH_SLURM_CLUSTER": str(fake_cluster), "HOME": str(tmp_path)}
    if ci:
        env["CI"] = "true"
    bash = shutil.which("bash")
    return subprocess.run([bash, "-c", _setup_portion()], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the cluster is started as root; this test checks that path")


@needs_root
def test_under_ci_a_cluster_that_does_not_start_fails_the_run(tmp_path):
    r = _run(tmp_path, ci=True, chromium="exit 0")
    assert r.returncode != 0 and "REACHED-THE-TESTS" not in r.stdout
    assert "slurmctld: fatal: cannot start" in r.stderr  # the stand-in ran, and failed
    assert "the one-node SLURM cluster did not start" in r.stderr and "must run, not skip" in r.stderr


@needs_root
def test_on_a_developers_machine_the_slurm_tests_skip_with_the_reason(tmp_path):
    r = _run(tmp_path, ci=False, chromium="exit 0")
    assert r.returncode == 0 and "REACHED-THE-TESTS" in r.stdout, r.stderr
    assert "slurmctld: fatal: cannot start" in r.stderr  # the stand-in ran, and failed
    assert "the one-node SLURM cluster did not start (see the lines above): the SLURM tests will skip" in r.stdout


def test_under_ci_a_browser_that_cannot_be_installed_fails_the_run(tmp_path):
    r = _run(tmp_path, ci=True, **{"apt-get": "echo 'E: Unable to locate package chromium' >&2; exit 100"})
    assert r.returncode != 0 and "REACHED-THE-TESTS" not in r.stdout
    assert "chromium could not be installed" in r.stderr
    (tmp_path / "dev").mkdir()
    r = _run(tmp_path / "dev", ci=False, **{"apt-get": "exit 100"})
    assert "chromium could not be installed (apt-get install chromium failed): the HTML rendering test will skip" \
        in r.stdout


def test_ci_run_sets_up_before_the_tests_and_stops_on_a_failure():
    text = RUN.read_text(encoding="utf-8")
    assert "set -euo pipefail" in text
    lines = [line.strip() for line in text.splitlines()]
    assert lines.index(". .ci/setup.sh") < lines.index("system_setup") < next(
        i for i, line in enumerate(lines) if line.startswith("python -m pytest"))
