"""benchmarks/gpu_check.sh --dry-run: the device check's every section, on the CPU at the tiny size.

The script is what a session lent a GPU runs first, as one command within the lease; this keeps it working
where no GPU is (CI and every session): every section prints, and at most 8 files land in its folder.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("BENCH_DATA_DIR", ROOT.parent / "shared" / "data"))


@pytest.mark.skipif(not (DATA / "glue" / "SST-2").is_dir() or not (DATA / "corpus").is_dir(),
                    reason="needs the shared data folder (BENCH_DATA_DIR with glue/SST-2 and corpus/)")
def test_gpu_check_dry_run_prints_every_section(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "BENCH_DATA_DIR": str(DATA), "OUT": ""}
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", str(out)], env=env,
                       capture_output=True, text=True, timeout=900)
    text = r.stdout + r.stderr
    assert r.returncode == 0, text[-3000:]
    for header in ("== 0. device", "== 1. GPU tests", "== 2. pretraining step", "== 3. electra vs bert", "== wall:"):
        assert header in text, (header, text[-3000:])
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and {"device.txt", "tests.txt", "speed.md", "run.md", "run_speed.md", "log.txt"} <= set(files)
    run = (out / "run.md").read_text()
    assert "| electra" in run and "| bert" in run  # the comparison table was printed
    assert "steps/s" in (out / "run_speed.md").read_text() and "harness" in (out / "speed.md").read_text().lower()
