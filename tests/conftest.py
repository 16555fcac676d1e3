"""Shared fixtures: offline, deterministic, tiny. Real data only where BENCH_DATA_DIR has it."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def machine_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test its own machine cache of prepared data ($BENCH_CACHE_DIR; bench/data/pretrain_data.py),
    as each had its own results folder's before: a test never reads or fills ~/.cache/electra-bench.
    Subprocesses (bench_process) inherit it through os.environ."""
    folder = tmp_path_factory.mktemp("bench-cache")
    monkeypatch.setenv("BENCH_CACHE_DIR", str(folder))
    return folder


WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau "
         "upsilon phi chi psi omega").split()


@pytest.fixture
def shared_data() -> Path:
    """The real data folder, or a clean skip."""
    value = os.environ.get("BENCH_DATA_DIR")
    if not value or not (Path(value) / "glue").is_dir():
        pytest.skip("BENCH_DATA_DIR with glue/ not set")
    return Path(value)


def write_corpus(root: Path, *, docs: int = 60, seed: int = 0) -> Path:
    """A plain-text corpus with strong structure: documents of repeated patterns."""
    rng = random.Random(seed)
    folder = root / "corpus" / "synthetic"
    folder.mkdir(parents=True, exist_ok=True)
    patterns = [WORDS[i:i + 6] for i in range(0, 18, 3)]
    out = []
    for _ in range(docs):
        sents = [" ".join(rng.choice(patterns)) + " ." for _ in range(rng.randint(4, 10))]
        out.append("\n".join(sents))
    (folder / "part-0.txt").write_text("\n\n".join(out) + "\n", encoding="utf-8")
    return folder


# bench.toml's table for the task write_task writes (tests append it to their own [run] settings)
TOY_TASK_TOML = """[tasks.toy]
adapter = "csv"
train = "task/train.csv"
dev = "task/dev.csv"
text = "text"
label = "label"
"""


def write_task(root: Path, *, n_train: int = 160, n_dev: int = 40, seed: int = 0) -> Path:
    """A trivially learnable sentiment-like CSV task: label 1 iff the text contains "sigma" (a corpus word)."""
    rng = random.Random(seed)
    folder = root / "task"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", n_train), ("dev", n_dev)):
        lines = ["text,label"]
        for i in range(n):
            label = i % 2
            words = [rng.choice(WORDS[:12]) for _ in range(5)]
            if label:
                words[rng.randrange(5)] = "sigma"
            lines.append(f"{' '.join(words)},{'pos' if label else 'neg'}")
        (folder / f"{name}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


MICRO = dict(
    name="micro", description="test-only", hidden=128, layers=2, heads=2, ffn=256, embedding=128,
    gen_hidden=16, gen_heads=1, gen_ffn=32, vocab_size=120, max_position=64, seq_len=32,
    pretrain_batch=8, pretrain_lr=5e-4, warmup_fraction=0.1, budget_flops=1e10,
    finetune_lr=2e-3, finetune_batch=16, finetune_epochs=4, finetune_max_length=16, seeds=2,
)
# `bench` in a child process, with the test-only `micro` preset registered first.
CLI_BOOTSTRAP = (f"import sys; from models import sizes; sizes.SIZES['micro'] = sizes.SizePreset(**{MICRO!r}); "
                 "from bench.cli import main; sys.argv[0] = 'bench'; main()")


@pytest.fixture
def micro_size(monkeypatch: pytest.MonkeyPatch):
    """A throwaway size preset small enough for a whole run in seconds."""
    from models import sizes

    preset = sizes.SizePreset(**MICRO)
    monkeypatch.setitem(sizes.SIZES, "micro", preset)
    return preset


def _default_sigint() -> None:
    """In the child: SIGINT as a terminal delivers it. A background job of a script (`cmd &` without job
    control) starts with SIGINT ignored, and Python then never raises KeyboardInterrupt; the tests that send
    SIGINT on purpose must not depend on how pytest was started."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def bench_process(args: list[str], cwd: Path, **popen: object) -> subprocess.Popen:
    """`bench <args>` as a child process in `cwd` (micro preset known), stdout+stderr captured as text."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1"}
    popen.setdefault("preexec_fn", _default_sigint)
    return subprocess.Popen([sys.executable, "-c", CLI_BOOTSTRAP, *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **popen)


def run_bench(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`bench <args>` in a child process, waited for."""
    proc = bench_process(args, cwd)
    out, _ = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


@pytest.fixture
def micro_project(tmp_path: Path, micro_size) -> Path:
    """A folder with a synthetic corpus, a CSV task and a bench.toml that uses them."""
    write_corpus(tmp_path)
    write_task(tmp_path)
    (tmp_path / "bench.toml").write_text(
        """
[run]
models = ["electra", "bert"]
task = "toy"
size = "micro"
results = "results"
data = "."

[data]
corpus = "synthetic"

""" + TOY_TASK_TOML,
        encoding="utf-8",
    )
    return tmp_path
