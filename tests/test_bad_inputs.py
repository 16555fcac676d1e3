"""Every bad input, tried as a hostile user would: one clear line, a non-zero exit, nothing lost.

Each case of the matrix breaks one thing in a small working project and runs the CLI. It asserts
the exit status, a message naming the problem and the fix, no traceback, and the store's
integrity afterwards; a case found before any work also asserts that nothing was started.
Signals and a full disk need real processes and filesystems: they follow the matrix.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
from click.testing import CliRunner

from bench.cli import main
from bench.results.store import Store
from conftest import bench_process, run_bench


def toml(project: Path, section: str, line: str) -> None:
    """Add `line` under `[section]` of the project's bench.toml (adding the table if missing)."""
    path = project / "bench.toml"
    text = path.read_text(encoding="utf-8")
    header = f"[{section}]\n"
    text = text.replace(header, header + line + "\n", 1) if header in text else text + f"\n{header}{line}\n"
    path.write_text(text, encoding="utf-8")


def write(project: Path, rel: str, data: str | bytes) -> None:
    path = project / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))


def task_file(project: Path, name: str, transform: Callable[[list[str]], list[str]]) -> None:
    path = project / "task" / name
    path.write_text("\n".join(transform(path.read_text(encoding="utf-8").splitlines())) + "\n", encoding="utf-8")


def jsonl_task(project: Path) -> None:
    write(project, "task/train.jsonl", '{"text": "alpha sigma", "label": "pos"}\n{"text": "alpha", "label": "neg"\n')
    write(project, "task/dev.jsonl", '{"text": "alpha sigma", "label": "pos"}\n')
    text = (project / "bench.toml").read_text()
    text = text.replace('adapter = "csv"', 'adapter = "jsonl"').replace("train.csv", "train.jsonl")
    (project / "bench.toml").write_text(text.replace("dev.csv", "dev.jsonl"))


def corrupt_store(project: Path) -> None:
    write(project, "results/bench.db", os.urandom(8192))


def newer_store(project: Path) -> None:
    Store(project / "results" / "bench.db").close()
    con = sqlite3.connect(project / "results" / "bench.db")
    con.execute("PRAGMA user_version = 99")
    con.close()


def half_corrupt_store(project: Path) -> None:
    db = project / "results" / "bench.db"
    with Store(db) as s:
        for i in range(40):
            s.claim(f"r{i}", kind="finetune", model="bert", spec={}, code_version="v", task="toy")
            s.finish(f"r{i}", [])
        s._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(db.read_bytes())
    data[2 * 4096: 2 * 4096 + 64] = bytes(range(64))  # one page header in the middle
    db.write_bytes(bytes(data))


def glue_header(project: Path) -> None:
    write(project, "glue/SST-2/train.tsv", "sentence\tlabel_typo\nan example\t1\n")
    write(project, "glue/SST-2/dev.tsv", "sentence\tlabel\nan example\t1\n")


@dataclass
class Case:
    id: str
    args: list[str]
    patterns: list[str]  # regexes the output must match: the problem, and the fix
    setup: Callable[[Path], None] = lambda project: None
    code: int = 2
    before_work: bool = True  # found before any run starts: nothing may be claimed or written
    store_damaged: bool = False  # the store is bad on purpose: it must be left exactly as it was
    extra: dict = field(default_factory=dict)


RUN = ["run", "--quiet"]
CASES = [
    # --- bench.toml and flags ----------------------------------------------------------------------
    Case("toml-syntax", RUN, [r"bench\.toml, line \d+: malformed TOML", "Fix the syntax"],
         lambda p: write(p, "bench.toml", '[run]\nmodels = ["electra"\n')),
    Case("unknown-table", RUN, [r"unknown key \[trainer\]", "Valid keys: run, data, pretrain"],
         lambda p: toml(p, "trainer", "lr = 1")),
    Case("unknown-key", RUN, [r"line \d+: unknown key pretrain\.warmup_frac", "Did you mean 'warmup_fraction'"],
         lambda p: toml(p, "pretrain", "warmup_frac = 0.1")),
    Case("wrong-type", RUN, [r"line \d+: `pretrain\.lr` must be a number, got 'fast'"],
         lambda p: toml(p, "pretrain", 'lr = "fast"')),
    Case("unknown-model", [*RUN, "--models", "electra,nosuch"],
         [r"unknown model 'nosuch' \(in --models\)", r"Registered models: all-tokens-mlm, bert, electra, electra-15, electra-gdes, replace-mlm, scratch"]),
    Case("unknown-task", [*RUN, "--task", "sst3"], ["unknown task 'sst3'", "Did you mean 'sst2'"]),
    Case("unknown-size", [*RUN, "--size", "huge"], ["unknown size preset 'huge'", "tiny"]),
    Case("unknown-control", [*RUN, "--control", "scrach"], ["unknown model 'scrach'", "Did you mean 'scratch'"]),
    Case("missing-config", [*RUN, "--config", "nope.toml"], ["config file nope.toml does not exist"]),
    Case("bad-convention", [*RUN, "--convention", "flops"], ["Invalid value for '--convention'", "paper"]),
    Case("budget-nan", RUN, [r"line \d+: run\.budget: a budget must be a positive, finite number", "electra-small@6.25%"],
         lambda p: toml(p, "run", "budget = nan")),
    Case("budget-inf", [*RUN, "--budget", "inf"], ["--budget: a budget must be a positive, finite number"]),
    Case("budget-negative", [*RUN, "--budget", "-1e12"], ["--budget: a budget must be a positive"]),
    Case("budget-unreadable", [*RUN, "--budget", "lots"], ["cannot read budget 'lots'", "20min"]),
    Case("budget-below-one-step", [*RUN, "--budget", "1000"],
         [r"the budget 1e\+03 .* is less than one pretraining step of \w+", "Give at least"]),
    Case("budget-unknown-reference", [*RUN, "--budget", "electra-huge@5%"], ["unknown reference run 'electra-huge'"]),
    Case("batch-zero", RUN, [r"line \d+: pretrain\.batch_size = 0 is out of range: give an integer >= 1"],
         lambda p: toml(p, "pretrain", "batch_size = 0")),
    Case("batch-negative", RUN, [r"pretrain\.batch_size = -4 is out of range"],
         lambda p: toml(p, "pretrain", "batch_size = -4")),
    Case("warmup-2", RUN, [r"pretrain\.warmup_fraction = 2\.0 is out of range: give a share of the run in \[0, 1\)"],
         lambda p: toml(p, "pretrain", "warmup_fraction = 2.0")),
    Case("lr-negative", RUN, [r"pretrain\.lr = -0\.001 is out of range: give a positive, finite number"],
         lambda p: toml(p, "pretrain", "lr = -1e-3")),
    Case("lr-nan", RUN, [r"pretrain\.lr = nan is out of range"], lambda p: toml(p, "pretrain", "lr = nan")),
    Case("adam-eps-zero", RUN, [r"pretrain\.adam_eps = 0\.0 is out of range"],
         lambda p: toml(p, "pretrain", "adam_eps = 0.0")),
    Case("weight-decay-negative", RUN, [r"pretrain\.weight_decay = -0\.1 is out of range"],
         lambda p: toml(p, "pretrain", "weight_decay = -0.1")),
    Case("log-every-zero", RUN, [r"pretrain\.log_every = 0 is out of range"],
         lambda p: toml(p, "pretrain", "log_every = 0")),
    Case("seq-len-too-long", RUN, [r"pretrain\.seq_len = 1024 exceeds the micro preset's 64 positions"],
         lambda p: toml(p, "pretrain", "seq_len = 1024")),
    Case("checkpoint-fraction", RUN, [r"pretrain\.checkpoint_fractions must be shares of the budget in \(0, 1\]"],
         lambda p: toml(p, "pretrain", "checkpoint_fractions = [1.5]")),
    Case("precision-unknown", RUN, [r"pretrain\.precision = 'fp16'; choose auto, fp32 or bf16"],
         lambda p: toml(p, "pretrain", 'precision = "fp16"')),
    Case("seeds-zero", [*RUN, "--seeds", "0"], ["Invalid value for '--seeds': 0 is not in the range x>=1"]),
    Case("epochs-negative", [*RUN, "--epochs", "-1"], ["Invalid value for '--epochs'"]),
    Case("finetune-lr-negative", RUN, [r"finetune\.lr = -0\.0003 is out of range: give a positive"],
         lambda p: toml(p, "finetune", "lr = -3e-4")),
    Case("finetune-max-length", RUN, [r"task toy: fine-tuning max_length = 4096 exceeds the micro preset's 64"],
         lambda p: toml(p, "finetune", "max_length = 4096")),
    Case("task-epochs-zero", RUN, [r"task toy: fine-tuning setting: finetune\.epochs = 0 is out of range",
                                   r"\[tasks\.toy\]"], lambda p: toml(p, "tasks.toy", "epochs = 0")),
    Case("model-option-unknown", RUN, [r"bad option in \[models\.electra\]: .*unknown option\(s\) 'foo'"],
         lambda p: toml(p, "models.electra", "foo = 1")),
    Case("model-option-value", RUN, [r"bad option in \[models\.electra\]: mask_prob must be in \(0, 1\)"],
         lambda p: toml(p, "models.electra", "mask_prob = 2.0")),
    Case("model-table-unknown", RUN, [r"\[models\.electar\]", "Did you mean 'electra'"],
         lambda p: toml(p, "models.electar", "disc_weight = 10")),
    # --- data -----------------------------------------------------------------------------------------
    Case("corpus-missing", RUN, ["corpus 'nothere' not found; tried", "Put its files in"],
         lambda p: (p / "bench.toml").write_text((p / "bench.toml").read_text().replace('"synthetic"', '"nothere"'))),
    Case("corpus-empty-folder", RUN, ["holds no text files"],
         lambda p: [f.unlink() for f in (p / "corpus" / "synthetic").iterdir()]),
    Case("corpus-binary", RUN, [r"part-0\.txt", "NUL bytes", "must be UTF-8 text"],
         lambda p: write(p, "corpus/synthetic/part-0.txt", os.urandom(3 * 2**20))),
    Case("corpus-fake-gzip", RUN, [r"part-0\.gz", "gzip"],
         lambda p: (p / "corpus/synthetic/part-0.txt").rename(p / "corpus/synthetic/part-0.gz")),
    Case("corpus-no-documents", RUN, ["yielded no documents"],
         lambda p: write(p, "corpus/synthetic/part-0.txt", "\n\n\n")),
    Case("vocab-missing", RUN, ["vocab 'nosuch' not found", "vocab/nosuch/vocab.txt"],
         lambda p: toml(p, "data", 'vocab = "nosuch"')),
    Case("glue-missing", [*RUN, "--task", "sst2"], [r"no local file at .*glue/SST-2/train\.tsv", "BENCH_DATA_DIR"]),
    Case("glue-bad-header", [*RUN, "--task", "sst2"], [r"train\.tsv: expected GLUE SST-2 columns label"],
         glue_header),
    Case("task-file-missing", RUN, [r"task/nope\.csv .*does not exist"],
         lambda p: (p / "bench.toml").write_text((p / "bench.toml").read_text().replace("train.csv", "nope.csv"))),
    Case("task-ragged-row", RUN, [r"train\.csv, line 5: unparseable row: 3 fields where the header has 2"],
         lambda p: task_file(p, "train.csv", lambda rows: rows[:4] + ["alpha, beta,pos"] + rows[4:])),
    Case("task-jsonl-malformed", RUN, [r"train\.jsonl, line 2: unparseable row \(invalid JSON"], jsonl_task),
    Case("task-dev-label-unseen", RUN, [r"dev\.csv, line 3: label 'maybe' does not occur in the train file"],
         lambda p: task_file(p, "dev.csv", lambda rows: rows[:2] + ["alpha beta,maybe"] + rows[3:])),
    Case("task-empty", RUN, [r"train\.csv .* has no data rows"], lambda p: task_file(p, "train.csv", lambda r: r[:1])),
    Case("task-single-label", RUN, ["label column 'label' has a single value"],
         lambda p: task_file(p, "train.csv", lambda rows: [rows[0]] + [r.rsplit(",", 1)[0] + ",pos" for r in rows[1:]])),
    Case("task-not-utf8", RUN, [r"train\.csv: not UTF-8 text"],
         lambda p: write(p, "task/train.csv", "text,label\ncaf\xe9 alpha,pos\nbeta,neg\n".encode("latin-1"))),
    # --- results folder and store ------------------------------------------------------------------
    Case("results-is-a-file", [*RUN, "--results", "taken"], ["--results taken is a file, not a folder"],
         lambda p: write(p, "taken", "x")),
    Case("store-damaged", RUN, [r"results/bench\.db is damaged", r"mv .*bench\.db .*bench\.db\.broken"],
         corrupt_store, store_damaged=True),
    Case("store-newer", RUN, [r"newer electra-bench \(store schema 99", "Upgrade electra-bench"], newer_store,
         store_damaged=True),
    Case("report-half-damaged", ["report"], [r"bench\.db is damaged", r"\.recover"], half_corrupt_store,
         store_damaged=True),
    Case("report-no-store", ["report", "--results", "empty"], [r"no results store at empty/bench\.db", "bench run"]),
    Case("flops-negative-steps", ["flops", "--model", "bert", "--steps", "-5"],
         ["Invalid value for '--steps': -5 is not in the range x>=1"]),
    Case("flops-zero-batch", ["flops", "--model", "bert", "--batch", "0"], ["Invalid value for '--batch'"]),
    Case("path-checkpoint-missing", [*RUN, "--models", "path:/no/such/dir", "--control", "none"],
         ["/no/such/dir"]),
    Case("hf-uncached", [*RUN, "--models", "bert,hf:no-org/no-model"], ["no-org/no-model", "hub cache"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, micro_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    case.setup(micro_project)
    db = micro_project / "results" / "bench.db"
    before = db.read_bytes() if db.exists() else None
    monkeypatch.chdir(micro_project)
    result = CliRunner().invoke(main, case.args, catch_exceptions=False)
    out = result.output
    assert result.exit_code == case.code, out
    for pattern in case.patterns:
        assert re.search(pattern, out), f"{pattern!r} not in:\n{out}"
    assert "Traceback" not in out
    assert len([line for line in out.splitlines() if line.startswith(("error:", "Error:"))]) == 1, out
    if case.store_damaged:
        assert db.read_bytes() == before  # nothing written over what the user has
        return
    if db.exists():
        with Store(db) as s:
            s.check_integrity()
            if case.before_work:
                assert s.runs(status=None) == []  # nothing started
    if case.before_work:
        assert not (micro_project / "results" / "runs").exists()


def test_the_matrix_is_large_enough() -> None:
    assert len(CASES) >= 40


def test_a_bom_is_not_a_bad_input(micro_project, monkeypatch):
    for name in ("train.csv", "dev.csv"):
        path = micro_project / "task" / name
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    monkeypatch.chdir(micro_project)
    r = CliRunner().invoke(main, ["run", "--quiet", "--models", "bert", "--control", "none", "--seeds", "1"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output


# --- signals and a full disk: real processes, real filesystems ------------------------------------------


def _wait_for(predicate: Callable[[], bool], child: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and child.poll() is None and not predicate():
        time.sleep(0.05)
    assert child.poll() is None, child.communicate()[0]


def _finetuning_started(project: Path) -> bool:
    db = project / "results" / "bench.db"
    if not db.exists():
        return False
    try:
        con = sqlite3.connect(db, timeout=1)
        return bool(con.execute("SELECT count(*) FROM runs WHERE kind = 'finetune' AND status = 'running'").fetchone()[0])
    except sqlite3.OperationalError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_a_signal_mid_finetuning_loses_nothing(sig, micro_project):
    toml(micro_project, "finetune", "epochs = 15")  # long enough to be caught mid-way
    args = ["run", "--quiet", "--models", "bert", "--control", "none", "--seeds", "1"]
    child = bench_process(args, micro_project)
    _wait_for(lambda: _finetuning_started(micro_project), child)
    child.send_signal(sig)
    out, _ = child.communicate(timeout=120)
    if sig == signal.SIGINT:
        assert child.returncode == 130 and "interrupted by SIGINT" in out and "Traceback" not in out, out
    else:
        assert child.returncode == -signal.SIGKILL
    with Store(micro_project / "results" / "bench.db") as s:
        s.check_integrity()
        (ft,) = s.runs(kind="finetune", status=None)
        assert ft["status"] == ("failed" if sig == signal.SIGINT else "running")
        assert s.final_metrics(ft["id"]) == {}  # no half result
        assert s.runs(kind="pretrain")  # the finished pretraining stays done
    again = run_bench(args, micro_project)
    assert again.returncode == 0 and "0 pretrained, 1 fine-tuned, 1 already in the store" in again.stdout, again.stdout
    with Store(micro_project / "results" / "bench.db") as s:
        (ft,) = s.runs(kind="finetune")
        assert ft["attempts"] == 2  # restarted whole, as a second attempt


@pytest.fixture
def tiny_tmpfs(tmp_path: Path):
    """A 2 MiB tmpfs, or a skip that says why (it needs root and mount rights)."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    if not shutil.which("mount") or os.geteuid() != 0:
        pytest.skip("the full-disk case needs root to mount a tmpfs")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_full_disk_is_one_clear_error(micro_project, tiny_tmpfs):
    args = ["run", "--quiet", "--models", "bert", "--control", "none", "--seeds", "1", "--results", str(tiny_tmpfs)]
    done = run_bench(args, micro_project)
    assert done.returncode == 2, done.stdout
    assert re.search(r"(disk is full|No space left on device)", done.stdout), done.stdout
    assert "Free space" in done.stdout or "free space" in done.stdout
    assert "Traceback" not in done.stdout
    db = tiny_tmpfs / "bench.db"
    if db.exists():
        with Store(db) as s:  # readable, intact, and nothing marked done that is not
            s.check_integrity()
            assert all(r["status"] != "done" or s.final_metrics(r["id"]) for r in s.runs(status=None))
    leftovers = [p.name for p in tiny_tmpfs.rglob("*") if ".tmp" in p.name]
    assert leftovers == []


def test_an_unwritable_results_folder_is_one_clear_error(micro_project, tmp_path):
    ro = tmp_path / "readonly"
    ro.mkdir()
    if os.geteuid() != 0:
        os.chmod(ro, 0o555)
    else:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], capture_output=True)
        if done.returncode:
            pytest.skip("root ignores permissions, and a read-only tmpfs cannot be mounted here")
    try:
        r = run_bench(["run", "--quiet", "--results", str(ro / "results")], micro_project)
        assert r.returncode == 2 and "cannot write to the results folder" in r.stdout, r.stdout
        assert "Point --results at a folder you can write to" in r.stdout and "Traceback" not in r.stdout
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", "-l", str(ro)], capture_output=True)
