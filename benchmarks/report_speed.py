"""How long `bench report` takes over a large store, per format, and how much of it is start-up imports.

    python benchmarks/report_speed.py                 # a generated 1,000-run store, every text format
    python benchmarks/report_speed.py --runs 200 --repeat 5 --formats md,json
    python benchmarks/report_speed.py --results results   # an existing results folder instead

The store is written through bench.results.store.Store's own API (claim, then finish with metrics),
as `bench run` writes one: pretraining runs with loss series (every 10 steps) and checkpoints at
1/16..1 of the budget, and fine-tuning runs over models x GLUE tasks x checkpoints x seeds, plus
the no-pretraining control; the last seed is cut short to hit --runs exactly (a sweep in progress).

Each format is timed as a fresh process (`python -m bench report --results DIR --format FMT`),
median of --repeat runs, in two conditions taken in turn (so that the machine's noise falls on both):

- "wall s": Python's default, bytecode cached. The first run compiles the sources and writes the
  .pyc files (under a temporary PYTHONPYCACHEPREFIX, so the checkout is not touched); the timed runs
  read them, as every run after the first does on a researcher's machine.
- "no .pyc s": every start compiles the bench package from source (PYTHONDONTWRITEBYTECODE=1 and no
  __pycache__ in the package), as on machines that set that variable, like this project's sandbox
  and CI. Installed packages keep the .pyc files pip wrote.

"import s" is the cached command's import time as `python -X importtime` counts it (the sum of its
top-level imports' cumulative times), so "wall s - import s" is what reading the store and
rendering cost.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.results.store import DB_NAME, Metric, Store

try:  # run as a script (benchmarks/ on the path), or imported as benchmarks.<name>
    from record import recorded
except ImportError:
    from benchmarks.record import recorded

MODELS = ("electra", "bert", "replace-mlm", "all-tokens-mlm")
CONTROL = "scratch"
TASKS = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")
FRACTIONS = (0.0625, 0.125, 0.25, 0.5, 1.0)
BUDGET = 1.0e13
FLOPS_PER_STEP = 5e9
LOG_EVERY = 10
ENV = {"device": "cpu", "python": "3.11.9", "threads": 2, "host": "bench-host",
       "packages": {"torch": "2.5.1", "transformers": "4.46.0", "numpy": "2.1.0", "pandas": "2.2.3"}}
HEADLINE = {"cola": "matthews_correlation", "stsb": "spearmanr"}  # accuracy for the rest


def _score(model: str, task: str, fraction: float, seed: int) -> float:
    """A plausible dev score: rises with compute, electra ahead, a little seed noise (deterministic)."""
    base = {"electra": 0.78, "bert": 0.74, "replace-mlm": 0.75, "all-tokens-mlm": 0.76, CONTROL: 0.60}[model]
    task_shift = (TASKS.index(task) % 4) * 0.02
    return round(base - task_shift - 0.08 * (1 - fraction) + ((seed * 7 + len(task)) % 5 - 2) * 0.004, 6)


def _pretrain(store: Store, model: str) -> str:
    run_id = f"pt-{model}"
    pretrains = model != CONTROL
    budget = BUDGET if pretrains else 0.0
    spec = {"model": model, "size": "tiny", "convention": "paper", "pretrains": pretrains, "external": None,
            "budget": {"kind": "flops", "value": budget, "text": f"{BUDGET:g}"}, "lr": 5e-4, "batch": 32,
            "identity": {"corpus_sha": "0123456789abcdef", "vocab_sha": "fedcba9876543210"}}
    store.claim(run_id, kind="pretrain", model=model, spec=spec, code_version="src-bench", size="tiny",
                budget=budget, git_sha="0" * 40, environment=ENV)
    if not pretrains:
        store.finish(run_id, [Metric("steps", 0), Metric("wall_s", 0.0), Metric("flops_paper", 0.0),
                              Metric("flops_executed", 0.0)])
        return run_id
    steps = int(BUDGET / FLOPS_PER_STEP)
    metrics = [Metric("steps", steps), Metric("wall_s", steps * 0.3), Metric("tokens_per_s", 12000.0),
               Metric("flops_paper", BUDGET), Metric("flops_executed", BUDGET * 0.8),
               Metric("flops_per_step_paper", FLOPS_PER_STEP), Metric("flops_per_step_executed", FLOPS_PER_STEP * 0.8),
               Metric("params", 1.4e7), Metric("encoder_params", 1.35e7), Metric("budget_flops", BUDGET)]
    for f in FRACTIONS:
        s = round(steps * f)
        metrics.append(Metric("checkpoint", f, step=s, flops=s * FLOPS_PER_STEP, wall_s=s * 0.3))
    names = ("loss", "gen_loss", "disc_loss", "disc_base_entropy") if model.startswith("electra") else ("loss",
                                                                                                       "mlm_loss")
    for step in range(LOG_EVERY, steps + 1, LOG_EVERY):
        x = step / steps
        for name in names:
            value = {"loss": 10.0 - 3 * x, "gen_loss": 7.0 - x, "disc_loss": 0.45 - 0.1 * x, "disc_base_entropy": 0.41,
                     "mlm_loss": 7.2 - x}[name]
            metrics.append(Metric(name, value, step=step, flops=step * FLOPS_PER_STEP, wall_s=step * 0.3))
    store.finish(run_id, metrics)
    return run_id


def _finetune(store: Store, parent: str, model: str, task: str, fraction: float, seed: int) -> None:
    run_id = f"ft-{model}-{task}-{fraction:g}-{seed}"
    spec = {"model": model, "task": task, "seed": seed, "fraction": fraction, "pretrain_id": parent, "size": "tiny",
            "settings": {"lr": 3e-4, "epochs": 3, "batch": 32}, "task_data": "abcdef0123456789"}
    store.claim(run_id, kind="finetune", model=model, spec=spec, code_version="src-bench", task=task, size="tiny",
                budget=(BUDGET if model != CONTROL else 0.0) * fraction, seed=seed, parent_id=parent,
                git_sha="0" * 40, environment=ENV)
    score = _score(model, task, fraction, seed)
    metrics = [Metric("score", score), Metric("metric_accuracy", score), Metric("metric_f1", score - 0.01),
               Metric("train_wall_s", 30.0), Metric("eval_wall_s", 2.0), Metric("fraction", fraction)]
    if task in HEADLINE:
        metrics.append(Metric(f"metric_{HEADLINE[task]}", score - 0.2))
    store.finish(run_id, metrics)


def generate(path: Path, runs: int) -> int:
    """Write a store of exactly `runs` runs (pretraining first) at `path`; returns how many were written."""
    store = Store(path)
    store._conn.execute("PRAGMA synchronous = OFF")  # a generated store: no fsync per commit
    parents = {m: _pretrain(store, m) for m in (*MODELS, CONTROL)}
    written, seed = len(parents), 0
    while written < runs:  # seeds outermost: a smaller --runs cuts the last seed short
        for task in TASKS:
            for model in (*MODELS, CONTROL):
                for fraction in (FRACTIONS if model != CONTROL else (1.0,)):
                    if written >= runs:
                        break
                    _finetune(store, parents[model], model, task, fraction, seed)
                    written += 1
        seed += 1
    store.close()
    return written


def _wall(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t0


def _median_walls(cmd: list[str], repeat: int, cached: dict[str, str], uncached: dict[str, str]) -> tuple[float, float]:
    """Median wall seconds with bytecode cached and without, the two conditions taken in turn."""
    _wall(cmd, cached)  # compiles and writes the .pyc files the cached runs read
    with_pyc, without = [], []
    for _ in range(repeat):
        with_pyc.append(_wall(cmd, cached))
        _drop_pycache()
        without.append(_wall(cmd, uncached))
    return statistics.median(with_pyc), statistics.median(without)


def _drop_pycache() -> None:
    """No .pyc of the bench package beside its sources (build outputs, git-ignored; Python rewrites them)."""
    import bench

    for cache in Path(bench.__file__).parent.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)


def _median_import(cmd: list[str], repeat: int, env: dict[str, str]) -> float:
    """Seconds the command spends importing: the top-level imports' cumulative times from -X importtime."""
    totals = []
    for _ in range(repeat):
        err = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], check=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, env=env).stderr
        total = 0
        for line in err.splitlines():
            parts = line.removeprefix("import time:").split("|")
            if line.startswith("import time:") and len(parts) == 3 and parts[1].strip().isdigit():
                if not parts[2][1:].startswith(" "):  # a top-level import (nested ones are indented further)
                    total += int(parts[1])
        totals.append(total / 1e6)
    return statistics.median(totals)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1000, help="runs in the generated store (default 1000)")
    ap.add_argument("--results", help="time an existing results folder instead of generating one")
    ap.add_argument("--formats", default="md,json,csv,html", help="comma-separated formats (default md,json,csv,html)")
    ap.add_argument("--repeat", type=int, default=5, help="runs per measurement; the median is shown (default 5)")
    ap.add_argument("--out", type=Path, help="also write the output as a results file (docs/results/)")
    args = ap.parse_args()
    with recorded(args.out, "How fast `bench report` is"):
        _main(args)


def _main(args: argparse.Namespace) -> None:
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    base.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    with tempfile.TemporaryDirectory() as tmp:
        env = {**base, "PYTHONPYCACHEPREFIX": str(Path(tmp) / "pycache")}  # cached, outside the checkout
        uncached = {**base, "PYTHONDONTWRITEBYTECODE": "1"}
        if args.results:
            folder = Path(args.results)
            with Store(folder / DB_NAME) as store:
                n = len(store.runs(status=None))
        else:
            folder = Path(tmp)
            t0 = time.perf_counter()
            n = generate(folder / DB_NAME, args.runs)
            print(f"generated a store of {n} runs in {time.perf_counter() - t0:.1f} s: {folder / DB_NAME}")
        rows = []
        start = [sys.executable, "-c", "import bench.cli"]
        rows.append(("start-up (import bench.cli)", *_median_walls(start, args.repeat, env, uncached),
                     _median_import(start, args.repeat, env)))
        for fmt in args.formats.split(","):
            cmd = [sys.executable, "-m", "bench", "report", "--results", str(folder), "--format", fmt]
            if fmt == "parquet":
                cmd += ["--out", str(Path(tmp) / "report.parquet")]
            rows.append((f"bench report --format {fmt}", *_median_walls(cmd, args.repeat, env, uncached),
                         _median_import(cmd, args.repeat, env)))
    print(f"\n`bench report` over {n} runs, median of {args.repeat} fresh processes ({os.cpu_count()} CPUs):\n")
    print(f"| {'command':<34} | wall s | no .pyc s | import s |")
    print(f"|{'-' * 36}|--------|-----------|----------|")
    for name, wall, raw, imp in rows:
        print(f"| {name:<34} | {wall:6.2f} | {raw:9.2f} | {imp:8.2f} |")


if __name__ == "__main__":
    main()
