"""Several processes per run: `torchrun --nproc_per_node 2 -m bench run` on CPU (gloo).

One process and two processes of the same plan must take the same steps on the same tokens:
the same FLOPs, the same loss at step 1, a final loss within a small tolerance. Only rank 0
writes: an audit hook in rank 1 logs every file it opens for writing under the results
folder, and the log must stay empty. A failure on rank 1 alone must stop both ranks at once
and be recorded in the store with its rank, also when rank 1 is killed without a word or
frozen (the peer watch, not the collective backend, must see it).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import MICRO, TOY_TASK_TOML, write_task

pytestmark = pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun (PyTorch's launcher) not on PATH")

# The child's entry point: a dropout-free micro preset (dropout draws differ per process, so only
# without dropout can 1 and 2 processes agree to 1e-5), a backend that fails on rank 1 at its third
# step, and on ranks other than 0 an audit hook that logs every write under the results folder.
BOOT = """
import os, sys
from models import sizes
sizes.SIZES["micro"] = sizes.SizePreset(**{micro!r}, dropout=0.0)

from bench.backend import BackendOutput
from bench.registry import MODELS
from models.bert import BertBackend

class FailOnRank1(BertBackend):
    calls = 0
    def loss(self, batch):
        type(self).calls += 1
        if os.environ.get("RANK") == "1" and self.calls == 3:
            how = os.environ.get("BENCH_RANK1_SIGNAL")  # KILL: dies without a word; STOP: freezes, sockets open
            if how is None:
                raise RuntimeError("injected on rank 1")
            import signal, time
            with open("rank1.signalled", "w") as f:
                f.write(f"{{os.getpid()}} {{time.time()}}")
            os.kill(os.getpid(), getattr(signal, "SIG" + how))
        return super().loss(batch)

MODELS.add("failonrank1", FailOnRank1, description="test-only", source="test")

if os.environ.get("BENCH_SLOW_RECORD"):  # rank 0 records slowly: the launcher's SIGTERM comes meanwhile
    import time
    import bench.runner
    _peer_failure = bench.runner.peer_failure
    bench.runner.peer_failure = lambda: (time.sleep(2), _peer_failure())[1]

if os.environ.get("RANK", "0") != "0":
    watched = os.path.realpath(os.environ["BENCH_AUDIT_DIR"])
    log = open(os.environ["BENCH_AUDIT_LOG"], "a", buffering=1)
    WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def audit(event, args):
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (mode is None and flags & WRITE)
        elif event in ("os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir", "shutil.rmtree"):
            path, writing = args[0], True
        elif event == "sqlite3.connect":
            path, writing = args[0], True
        else:
            return
        if writing and isinstance(path, (str, bytes, os.PathLike)):
            full = os.path.realpath(os.fsdecode(path))
            if full.startswith(watched):
                log.write(event + " " + full + "\\n")

    sys.addaudithook(audit)

from bench.cli import main
sys.argv[0] = "bench"
main()
"""

TOML = """
[run]
models = ["bert", "electra"]
task = "toy"
size = "micro"
data = "."
control = ""
seeds = 1
budget = 2e10
[data]
corpus = "letters"
[pretrain]
batch_size = 8
""" + TOY_TASK_TOML


@pytest.fixture
def project(tmp_path: Path) -> Path:
    # Every block holds the same number of tokens (4 sentences of 7 one-letter tokens), so each
    # process masks as many tokens as the other: the mean of the two halves is the whole's mean.
    corpus = tmp_path / "corpus" / "letters"
    corpus.mkdir(parents=True)
    sentences = [" ".join("abcdefghijklmnop"[(i + j) % 16] for j in range(6)) + " ." for i in range(16)]
    docs = ["\n".join(sentences[(d + k) % 16] for k in range(40)) for d in range(40)]
    (corpus / "part-0.txt").write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    write_task(tmp_path, n_train=160, n_dev=41)  # an odd dev set: a padded sampler would duplicate one
    (tmp_path / "bench.toml").write_text(TOML, encoding="utf-8")
    (tmp_path / "boot.py").write_text(BOOT.format(micro=MICRO), encoding="utf-8")
    return tmp_path


def command(project: Path, processes: int, results: str, *extra: str,
            env: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1",
           "BENCH_AUDIT_DIR": str(project / results), "BENCH_AUDIT_LOG": str(project / f"{results}.rank1-writes")}
    if processes == 1:
        cmd = [sys.executable, "boot.py"]
    else:
        cmd = ["torchrun", "--standalone", "--nproc_per_node", str(processes), "boot.py"]
    return [*cmd, "run", "--quiet", "--results", results, *extra], env


def launch(project: Path, processes: int, results: str, *extra: str,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd, env = command(project, processes, results, *extra, env=env)
    return subprocess.run(cmd, cwd=project, env=env, text=True, capture_output=True, timeout=600)


def _store(project: Path, results: str) -> sqlite3.Connection:
    con = sqlite3.connect(project / results / "bench.db")
    con.row_factory = sqlite3.Row
    return con


def _metric(con: sqlite3.Connection, model: str, name: str, step: int | None = None) -> float:
    q = ("SELECT m.value FROM metrics m JOIN runs r ON r.id = m.run_id WHERE r.kind = 'pretrain' AND r.model = ? "
         "AND m.name = ? AND " + ("m.step IS NULL" if step is None else "m.step = ?"))
    return con.execute(q, (model, name) if step is None else (model, name, step)).fetchone()[0]


def test_two_processes_take_the_same_steps_on_the_same_tokens(project):
    peak = {"BENCH_PEAK_FLOPS": "1e9"}  # one device's peak: MFU is reported on this CPU too
    one = launch(project, 1, "one", env=peak)
    assert one.returncode == 0, one.stdout + one.stderr
    two = launch(project, 2, "two", env=peak)
    assert two.returncode == 0, two.stdout + two.stderr
    out = two.stdout + two.stderr
    assert out.count("| bert") == 1 and "done in" in out  # one table, printed by rank 0 alone
    a, b = _store(project, "one"), _store(project, "two")
    for model in ("bert", "electra"):
        for name in ("steps", "flops_paper", "flops_executed", "tokens"):
            assert _metric(a, model, name) == _metric(b, model, name), (model, name)
        first = "loss"
        # the same loss before any update; float32 sums over half batches round differently (~1e-6 relative)
        loss_a, loss_b = _metric(a, model, first, 1), _metric(b, model, first, 1)
        assert abs(loss_a - loss_b) <= 1e-5 * abs(loss_a), (model, loss_a, loss_b)
        final_a, final_b = _metric(a, model, "final_loss"), _metric(b, model, "final_loss")
        assert abs(final_a - final_b) <= 1e-3 * abs(final_a), (model, final_a, final_b)  # float sums reorder
        # MFU per device: the global batch's FLOP/s over both processes' peak, not one's (which overstates it 2x)
        for con, processes in ((a, 1), (b, 2)):
            achieved = _metric(con, model, "achieved_flops_per_s")
            assert _metric(con, model, "mfu") == pytest.approx(achieved / (processes * 1e9)), (model, processes)
    # one store row per run, each claimed once; fine-tuning scores the same, on 41 dev examples each
    rows = b.execute("SELECT kind, attempts, status FROM runs").fetchall()
    assert len(rows) == 4 and all(r["attempts"] == 1 and r["status"] == "done" for r in rows)
    q = "SELECT r.model, m.value FROM runs r JOIN metrics m ON m.run_id = r.id WHERE m.name = 'score' ORDER BY 1"
    scores_a, scores_b = a.execute(q).fetchall(), b.execute(q).fetchall()
    assert [tuple(r) for r in scores_a] == [tuple(r) for r in scores_b]
    assert all(abs(v * 41 - round(v * 41)) < 1e-9 for _, v in scores_b)  # accuracy over exactly 41 examples
    # rank 1 wrote nothing under the results folder; no temporary leftovers
    log = project / "two.rank1-writes"
    assert not log.exists() or log.read_text() == "", log.read_text()
    assert [p.name for p in (project / "two").rglob("*") if ".tmp" in p.name] == []


def test_a_failure_on_rank_1_stops_both_ranks_and_is_recorded(project):
    started = time.monotonic()
    # rank 0 takes 2 s to record the failure: torchrun sends it SIGTERM meanwhile, which must not cut it short
    done = launch(project, 2, "fail", "--models", "failonrank1", env={"BENCH_SLOW_RECORD": "1"})
    took = time.monotonic() - started
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert took < 120, took  # no rank left waiting in a collective
    assert "failed on rank 1: RuntimeError: injected on rank 1" in out
    assert "Traceback" not in done.stdout
    (run,) = _store(project, "fail").execute("SELECT status, error FROM runs WHERE kind = 'pretrain'").fetchall()
    assert run["status"] == "failed" and run["error"].startswith("failed on rank 1: RuntimeError: injected on rank 1")


@pytest.mark.parametrize("how", ["KILL", "STOP"])
def test_a_rank_killed_or_frozen_mid_run_is_recorded_within_seconds(project, how):
    # KILL: rank 1 dies without leaving a word. STOP: it freezes with its connections open, so rank 0's
    # collective waits for it as every collective does under NCCL when a peer dies: gloo's failure cannot
    # help, and only the peer watch (its beats in the launcher's store) sees it.
    cmd, env = command(project, 2, "lost", "--models", "failonrank1",
                       env={"BENCH_RANK1_SIGNAL": how, "BENCH_PEER_TIMEOUT_S": "4"})
    proc = subprocess.Popen(cmd, cwd=project, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    marker, db = project / "rank1.signalled", project / "lost" / "bench.db"
    try:
        deadline, failed_at, run = time.monotonic() + 150, None, None
        while time.monotonic() < deadline and failed_at is None:
            if marker.exists() and db.exists():
                con = _store(project, "lost")
                run = con.execute("SELECT status, error FROM runs WHERE kind = 'pretrain'").fetchone()
                con.close()
                if run is not None and run["status"] == "failed":
                    failed_at = time.time()
            time.sleep(0.25)
        assert failed_at is not None, f"no failure recorded: {run and dict(run)}"
        pid, signalled_at = marker.read_text().split()
        assert failed_at - float(signalled_at) < 20  # seconds, not the collective's 12-hour timeout
        assert run["error"].startswith("failed on rank 1: "), run["error"]
    finally:
        if marker.exists():  # a frozen rank 1 would hold torchrun for its 30 s SIGTERM-to-SIGKILL wait
            try:
                os.kill(int(marker.read_text().split()[0]), 9)
            except ProcessLookupError:
                pass
        stdout, stderr = proc.communicate(timeout=120)
    print(run["error"], f"recorded {failed_at - float(signalled_at):.1f} s after the signal")
    assert proc.returncode != 0, stdout + stderr
    assert "failed on rank 1" in stderr and "Traceback" not in stdout, stdout + stderr
