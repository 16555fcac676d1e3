"""The two standard deviations behind every claim, from a store with replicated pretraining runs.

    bench run --models bert --task sst2 --pretrain-seeds 3 --seeds 5 --control none --results variance
    python benchmarks/variance.py --results variance --out docs/results/variance.md

Prints, per model configuration with at least 2 pretraining runs, each run's fine-tuning scores and
median, and the method-of-moments estimates (bench.results.inference.variance_components): the sd
between fine-tuning seeds of one run, and the sd between pretraining runs that remains once the
seed noise a run's median carries is taken out. These are the defaults `bench plan --power` and
benchmarks/claim_calibration.py use without a store of their own (inference.DEFAULT_VARIANCE).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results.inference import variance_components  # noqa: E402
from bench.results.store import Store  # noqa: E402
from bench.results.tables import RUN_SCORES, _key, comparison_rows, finetune_rows, full_budget  # noqa: E402


def _upper(groups: list[list[list[float]]], sd_finetune: float, level: float = 0.95) -> float:
    """One-sided upper confidence bound of the between-run sd: the pooled variance of run medians at its chi-square
    bound, less the seed noise a median carries (bench.results.inference.median_variance_factor)."""
    from scipy import stats as sps

    from bench.results.inference import median_variance_factor

    ss, df, factor = 0.0, 0, 0.0
    for runs in groups:
        meds = [statistics.median(r) for r in runs if len(r) >= 2]
        if len(meds) >= 2:
            ss += statistics.variance(meds) * (len(meds) - 1)
            df += len(meds) - 1
            factor += median_variance_factor(int(statistics.median(len(r) for r in runs))) * (len(meds) - 1)
    upper = ss / sps.chi2.ppf(1 - level, df)
    return max(0.0, upper - factor / df * sd_finetune ** 2) ** 0.5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default="results", help="results folder holding bench.db")
    ap.add_argument("--out", type=Path, help="also write the markdown to this file")
    ap.add_argument("--command", default="", help="the bench run command that filled the store (for the record)")
    args = ap.parse_args()
    with Store(Path(args.results) / "bench.db") as store:
        rows = comparison_rows(finetune_rows(store))
        codes = sorted({r["code_version"] for r in store.runs(kind="pretrain")})
    runs = rows.attrs[RUN_SCORES]
    lines, groups, first = [], [], None
    for r in full_budget(rows).records:
        per_run = runs.get(_key(r), [])
        if sum(1 for x in per_run if x) < 2:
            continue
        groups.append(per_run)
        first = first or r
        lines.append(f"{r['model']} on {r['task']} ({r['size']}, {r['budget_flops']:.3g} FLOPs): "
                     f"{len(per_run)} pretraining runs x {r['seeds']} fine-tuning seeds")
        for i, scores in enumerate(per_run):
            lines.append(f"  run {i}: median {statistics.median(scores):.4f}  seeds "
                         + " ".join(f"{s:.4f}" for s in scores))
    v = variance_components(groups)
    if v is None:
        sys.exit("no configuration with at least 2 pretraining runs of 2 or more seeds in that store")
    lines.append(f"sd between fine-tuning seeds of one run: {v.sd_finetune:.4f}")
    lines.append(f"sd between pretraining runs (seed noise taken out): {v.sd_pretrain:.4f}")
    lines.append(f"95% upper bound of the sd between pretraining runs: {_upper(groups, v.sd_finetune):.4f} (the spread of "
                 f"run medians has few degrees of freedom: the estimate above can be 0 by chance)")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip() or "unknown"
    command = args.command or "bench run --models bert --task sst2 --pretrain-seeds 3 --seeds 5 --control none"
    head = [f"- command: `{command}`, then `python benchmarks/variance.py --results {args.results}`",
            f"- date: {date.today().isoformat()}",
            f"- machine: {platform.machine()} CPU, {len(__import__('os').sched_getaffinity(0))} cores, no GPU",
            f"- commit: {commit} (the runs' code versions: {', '.join(codes)})",
            f"- preset: {first['size']}", f"- budget: {first['budget_flops']:g}", f"- seeds: {first['seeds']}"]
    text = "\n".join(head + ["", "```", *lines, "```"])
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("### Measured variance: pretraining runs and fine-tuning seeds\n\n" + text + "\n",
                            encoding="utf-8")


if __name__ == "__main__":
    main()
