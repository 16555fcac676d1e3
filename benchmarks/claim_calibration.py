"""How often does a claim "A beats B" come out wrong, and how often is a true gap found? Simulated, per design.

Two objectives are simulated from a two-level noise model: each pretraining run of a model shifts its
scores by N(0, sd_pretrain), each fine-tuning seed adds N(0, sd_finetune). Under no true difference, a
claim about the objectives at the 95% level is a false claim; with a true gap (0.5, 1, 2 points) a
correct claim is power. Designs: pretraining runs per model x fine-tuning seeds per run.

Two methods side by side, on the same simulated scores:
- shipped: bench.results.inference.compare, the pretraining run as the unit (Welch t over per-run
  medians); with one pretraining run a side it compares checkpoints and makes no claim about objectives.
- before: the percentile bootstrap of the median gap over every fine-tuning score, pretraining runs
  pooled (bench.results.stats.bootstrap_median_gap: what reports used before; with one pretraining run
  per model it is exactly that). Exact for up to 9 scores a side, else Monte Carlo, as the function does.

The standard deviations default to the ones measured on this project's tiny preset (docs: Concepts,
claims); give others with --sd-pretrain / --sd-finetune (score units: 0.01 = one point).

    python benchmarks/claim_calibration.py                  # the table (about 3 minutes on 2 cores)
    python benchmarks/claim_calibration.py --sims 500 --out docs/results/claim_calibration.md
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results.inference import DEFAULT_VARIANCE, compare  # noqa: E402
from bench.results.stats import bootstrap_median_gap  # noqa: E402

RUNS = (1, 2, 3, 5)
SEEDS = (2, 3, 5, 10)
GAPS = (0.005, 0.01, 0.02)  # 0.5, 1 and 2 points of accuracy
LEVEL = 0.95


def simulate(rng: np.random.Generator, runs: int, seeds: int, gap: float, sd_p: float,
             sd_f: float) -> tuple[list[list[float]], list[list[float]]]:
    """One experiment: each side's scores grouped by pretraining run."""
    def side(mean: float) -> list[list[float]]:
        return [list(mean + o + rng.normal(0, sd_f, seeds)) for o in rng.normal(0, sd_p, runs)]
    return side(0.8 + gap), side(0.8)


def _before(rng: np.random.Generator, a: list[float], b: list[float]) -> tuple[float, float]:
    """The earlier reports' interval: bootstrap_median_gap itself (exact up to 7 scores a side, Monte Carlo with
    2,000 resamples above 9); for 8-9 scores, where its exact enumeration takes a second a call, the same
    percentile rule over 2,000 Monte-Carlo resamples."""
    if len(a) <= 7 or len(a) > 9:
        ci = bootstrap_median_gap(a, b, level=LEVEL, n_resamples=2000)
        return (ci.low, ci.high) if ci.method != "single-seed" else (0.0, 0.0)
    ma = np.median(rng.choice(np.asarray(a), size=(2000, len(a))), axis=1)
    mb = np.median(rng.choice(np.asarray(b), size=(2000, len(b))), axis=1)
    g = ma - mb
    tail = (1 - LEVEL) / 2
    return float(np.quantile(g, tail, method="inverted_cdf")), float(-np.quantile(-g, tail, method="inverted_cdf"))


def rates(runs: int, seeds: int, gap: float, sims: int, sd_p: float, sd_f: float, seed: int) -> dict[str, float]:
    """Share of simulations in which each method claims "A beats B" (and, for the null, either direction)."""
    rng = np.random.default_rng(seed)
    shipped = before = 0
    for _ in range(sims):
        a, b = simulate(rng, runs, seeds, gap, sd_p, sd_f)
        c = compare(a, b, level=LEVEL)
        if c.objectives and c.significant and (gap == 0 or c.gap > 0):
            shipped += 1
        low, high = _before(rng, [x for r in a for x in r], [x for r in b for x in r])
        if not low <= 0.0 <= high and (gap == 0 or low > 0):
            before += 1
    return {"shipped": shipped / sims if runs >= 2 else math.nan, "before": before / sims}


def table(sims: int, sd_p: float, sd_f: float, seed: int) -> list[dict[str, object]]:
    rows = []
    for runs in RUNS:
        for seeds in SEEDS:
            null = rates(runs, seeds, 0.0, sims, sd_p, sd_f, seed)
            row: dict[str, object] = {"runs": runs, "seeds": seeds, "false_shipped": null["shipped"],
                                      "false_before": null["before"]}
            for g in GAPS:
                pw = rates(runs, seeds, g, sims, sd_p, sd_f, seed + 1)
                row[f"power_{g * 100:g}_shipped"] = pw["shipped"]
                row[f"power_{g * 100:g}_before"] = pw["before"]
            rows.append(row)
            print(f"  {runs} runs x {seeds} seeds done", file=sys.stderr, flush=True)
    return rows


def _pct(x: object) -> str:
    return "no claim" if isinstance(x, float) and math.isnan(x) else f"{float(x):.1%}"  # type: ignore[arg-type]


def render(rows: list[dict[str, object]], sims: int, sd_p: float, sd_f: float, source: str, command: str,
           seconds: float) -> str:
    from tabulate import tabulate

    head = ["pretraining runs", "seeds per run", "false claims: shipped", "false claims: before"]
    for g in GAPS:
        head += [f"power at {g * 100:g} pt: shipped", f"power at {g * 100:g} pt: before"]
    body = []
    for r in rows:
        line = [r["runs"], r["seeds"], _pct(r["false_shipped"]), _pct(r["false_before"])]
        for g in GAPS:
            line += [_pct(r[f"power_{g * 100:g}_shipped"]), _pct(r[f"power_{g * 100:g}_before"])]
        body.append(line)
    err = 2 * math.sqrt(0.05 * 0.95 / sims)
    import platform
    from datetime import date

    return "\n".join([
        f"- command: `{command}`",
        f"- date: {date.today().isoformat()}",
        f"- machine: {platform.machine()} CPU, {len(__import__('os').sched_getaffinity(0))} cores ({seconds:.0f} s)",
        f"- commit: {_commit()}",
        "",
        f"{sims} simulated experiments per design and gap; sd between pretraining runs {sd_p:.4f}, between "
        f"fine-tuning seeds {sd_f:.4f} ({source}); claims at the {LEVEL:.0%} level. 'no claim': with one "
        f"pretraining run a side the shipped method compares checkpoints and claims nothing about objectives. "
        f"Simulation error on a 5% rate: +-{err:.1%} (2 standard errors). 'before' counts its claims in the "
        f"right direction as power, but comes with the false-claim rate beside it.",
        "",
        tabulate(body, headers=head, tablefmt="github", disable_numparse=True),
    ])


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sims", type=int, default=2000, help="simulated experiments per design and gap")
    p.add_argument("--sd-pretrain", type=float, default=None, help="sd of a score between pretraining runs")
    p.add_argument("--sd-finetune", type=float, default=None, help="sd between fine-tuning seeds of one run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="also write the table (markdown) to this file")
    args = p.parse_args()
    sd_p = DEFAULT_VARIANCE.sd_pretrain if args.sd_pretrain is None else args.sd_pretrain
    sd_f = DEFAULT_VARIANCE.sd_finetune if args.sd_finetune is None else args.sd_finetune
    source = DEFAULT_VARIANCE.source if args.sd_pretrain is None and args.sd_finetune is None else "given"
    t0 = time.perf_counter()
    rows = table(args.sims, sd_p, sd_f, args.seed)
    command = "python benchmarks/claim_calibration.py " + " ".join(sys.argv[1:])
    text = render(rows, args.sims, sd_p, sd_f, source, command.strip(), time.perf_counter() - t0)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("### How often a claim would be wrong: claim calibration\n\n" + text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
