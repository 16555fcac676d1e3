"""The CPU evidence curve: at what pretraining compute does pretraining beat no pretraining, and ELECTRA vs BERT there.

    bench run --suite cpu-crossover --results crossover          # then, in the same store:
    bench run --suite cpu-crossover-lowres --results crossover
    python benchmarks/crossover.py --results crossover --out docs/results/cpu-crossover.md \\
        --plot docs/results/cpu-crossover.png

Reads one store holding both fine-tuning regimes (the suites share their pretraining runs) and, per
regime and per checkpoint of the compute curve, compares each pretrained model with the scratch
control and ELECTRA with BERT, with the harness's own test (bench.results.inference.compare: Welch t
over pretraining runs, or over fine-tuning seeds where a side has one run, which then compares two
checkpoints, not two objectives) and Holm's correction over every comparison this script makes.
Runs that did not learn are left out, as in every claim. The crossover budget is the smallest
pretraining FLOPs at which some pretrained model beats scratch after the correction. It also
prints where the encoders' pretraining losses ended, and draws score against FLOPs per regime.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results.inference import Comparison, adjust_family, compare  # noqa: E402
from bench.results.report import build_report  # noqa: E402
from bench.results.store import Store  # noqa: E402
from bench.results.tables import run_scores_of, settings_of  # noqa: E402

VERDICT = {"better": "{a} better", "worse": "{b} better", "same": "no difference", "unknown": "cannot tell"}


def _cell(c: Comparison, a: str, b: str) -> str:
    if c.verdict == "unknown":
        return "cannot tell (too few runs that learned)"
    what = "objectives" if c.objectives else "checkpoints"
    return (f"{c.gap:+.4f} [{c.low:+.4f}, {c.high:+.4f}], p_holm {c.p_adjusted:.3g}: "
            f"{VERDICT[c.verdict].format(a=a, b=b)} ({what})")


def analyse(rows: list[dict[str, Any]], attrs_table: Any, control: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Per regime and curve point: the rows' scores and the comparisons, Holm-adjusted together."""
    regimes: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        regimes.setdefault(settings_of(r), []).append(r)
    points, drafts = [], []  # drafts: (point index, label, a, b, Comparison)
    for regime, recs in regimes.items():
        ctrl = next((r for r in recs if r["model"] == control), None)
        trained = sorted({r["model"] for r in recs if r["model"] != control})
        by = {(r["model"], r["pretrain_flops"]): r for r in recs}
        # the curve's points: the i-th checkpoint of each model (FLOPs differ a little: whole steps)
        per_model = {m: sorted(f for (mm, f) in by if mm == m and f > 0) for m in trained}
        n_points = min(len(v) for v in per_model.values()) if per_model else 0
        for i in range(n_points):
            point = {"regime": recs[0]["finetune"], "rows": {m: by[(m, per_model[m][i])] for m in trained},
                     "control": ctrl, "flops": statistics.fmean(per_model[m][i] for m in trained)}
            points.append(point)
            runs = {m: run_scores_of(attrs_table, row) or [] for m, row in point["rows"].items()}
            ctrl_runs = run_scores_of(attrs_table, ctrl) if ctrl is not None else None
            for m in trained:
                if ctrl_runs and any(runs[m]):
                    drafts.append((len(points) - 1, "vs control", m, control, compare(runs[m], ctrl_runs)))
            if len(trained) == 2 and all(any(runs[m]) for m in trained):
                a, b = trained if trained[0] == "electra" else trained[::-1]
                drafts.append((len(points) - 1, "pair", a, b, compare(runs[a], runs[b])))
    adjusted = adjust_family([d[4] for d in drafts])
    for (i, kind, a, b, _), c in zip(drafts, adjusted):
        points[i].setdefault("comparisons", []).append((kind, a, b, c))
    return points, [f"Holm's correction over {len(drafts)} comparisons (every point, both regimes)"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default="results", help="results folder holding bench.db")
    ap.add_argument("--control", default="scratch")
    ap.add_argument("--out", type=Path, help="also write the markdown to this file")
    ap.add_argument("--plot", type=Path, help="write score against pretraining FLOPs, per regime, as PNG")
    ap.add_argument("--command", default="bench run --suite cpu-crossover` and `bench run --suite cpu-crossover-lowres",
                    help="the bench run commands that filled the store (for the record)")
    args = ap.parse_args()
    with Store(Path(args.results) / "bench.db") as store:
        rep = build_report(store, control=args.control)
        shas = sorted({r["git_sha"][:7] for r in store.runs(kind="pretrain") if r.get("git_sha")})
        codes = sorted({r["code_version"] for r in store.runs(kind="pretrain")})
        seeds = sorted({r["spec"].get("seed", 0) for r in store.runs(kind="pretrain")})
    table = rep.comparison_rows
    points, notes = analyse(table.records, table, args.control)

    out: list[str] = []
    for regime in dict.fromkeys(p["regime"] for p in points):
        ps = [p for p in points if p["regime"] == regime]
        ctrl = ps[0]["control"]
        out += [f"#### SST-2 fine-tuned on {regime}", ""]
        if ctrl is not None:
            out.append(f"{args.control}: median {ctrl['score_median']:.4f} (min {ctrl['score_min']:.4f}, max "
                       f"{ctrl['score_max']:.4f}; {ctrl['seeds']} seeds x {ctrl['pretrain_runs']} init(s)"
                       + (f"; did not learn: {ctrl['not_learned']}" if ctrl["not_learned"] else "") + ")")
            out.append("")
        models = list(ps[0]["rows"])
        out.append("| pretraining FLOPs | " + " | ".join(f"{m} median (min-max)" for m in models)
                   + " | " + " | ".join(f"{m} vs {args.control}" for m in models) + " | electra vs bert |")
        out.append("|" + "---|" * (1 + 2 * len(models) + 1))
        crossover = None
        for p in ps:
            cells = []
            for m in models:
                r = p["rows"][m]
                nl = f", {r['not_learned']} did not learn" if r["not_learned"] else ""
                cells.append(f"{r['score_median']:.4f} ({r['score_min']:.4f}-{r['score_max']:.4f}{nl})")
            comps = {(kind, a): (a, b, c) for kind, a, b, c in p.get("comparisons", [])}
            for m in models:
                a, b, c = comps.get(("vs control", m), (m, args.control, None))
                cells.append(_cell(c, a, b) if c else "-")
                if c is not None and c.verdict == "better" and crossover is None:
                    crossover = (p["flops"], m)
            pair = next((v for k, v in comps.items() if k[0] == "pair"), None)
            cells.append(_cell(pair[2], pair[0], pair[1]) if pair else "-")
            out.append(f"| {p['flops']:.3g} | " + " | ".join(cells) + " |")
        out.append("")
        out.append(f"Crossover ({regime}): " + (
            f"{crossover[1]} beats {args.control} from {crossover[0]:.3g} pretraining FLOPs (the smallest point "
            f"where any pretrained model does, after the correction)." if crossover else
            f"no pretrained model beats {args.control} at any point up to {ps[-1]['flops']:.3g} FLOPs, after the "
            f"correction."))
        out.append("")
    losses = rep.losses_rows.records
    ends = []
    for model in sorted({r["model"] for r in losses}):
        for name in ("mlm_loss", "gen_loss", "disc_loss"):
            by_step: dict[int, list[float]] = {}
            for r in losses:
                if r["model"] == model and r["name"] == name:
                    by_step.setdefault(int(r["step"]), []).append(float(r["value"]))
            series = sorted((step, statistics.fmean(v)) for step, v in by_step.items())
            if series:
                ends.append(f"{model} {name} {series[0][1]:.3f} at step {series[0][0]} -> {series[-1][1]:.3f} "
                            f"at step {series[-1][0]}")
    out += ["Pretraining losses (nats; mean of each run's logged values, first and last logging step): "
            + "; ".join(ends) + ".", "", *notes]
    text = "\n".join(out)
    print(text)
    if args.plot:
        _plot(points, args.control, args.plot)
    if args.out:
        head = [f"- command: `{args.command}`, then `python benchmarks/crossover.py --results {args.results}`",
                f"- date: {date.today().isoformat()}",
                f"- machine: {platform.machine()} CPU, {_cores()} cores, no GPU",
                f"- commit: {', '.join(shas) or 'unknown'} (code {', '.join(codes)})",
                "- preset: tiny", "- suite: cpu-crossover",
                f"- budget: {max(r['budget_flops'] for r in table.records):g}",
                f"- seeds: {min(r['seeds'] for r in table.records)}",
                f"- pretraining seeds: {', '.join(str(s) for s in seeds)} (one pretraining run per model)"
                if len(seeds) == 1 else f"- pretraining seeds: {', '.join(str(s) for s in seeds)}"]
        args.out.write_text("### The CPU evidence curve (cpu-crossover)\n\n" + "\n".join(head) + "\n\n" + text + "\n",
                            encoding="utf-8")


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


def _plot(points: list[dict[str, Any]], control: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    regimes = list(dict.fromkeys(p["regime"] for p in points))
    fig, axes = plt.subplots(1, len(regimes), figsize=(5.5 * len(regimes), 4), squeeze=False)
    for ax, regime in zip(axes[0], regimes):
        ps = [p for p in points if p["regime"] == regime]
        for m in ps[0]["rows"]:
            xs = [p["rows"][m]["pretrain_flops"] for p in ps]
            med = [p["rows"][m]["score_median"] for p in ps]
            lo = [p["rows"][m]["score_median"] - p["rows"][m]["score_min"] for p in ps]
            hi = [p["rows"][m]["score_max"] - p["rows"][m]["score_median"] for p in ps]
            ax.errorbar(xs, med, yerr=[lo, hi], marker="o", capsize=3, label=m)
        ctrl = ps[0]["control"]
        if ctrl is not None:
            ax.axhline(ctrl["score_median"], color="grey", linestyle="--", label=f"{control} (median)")
            ax.axhspan(ctrl["score_min"], ctrl["score_max"], color="grey", alpha=0.15, label=f"{control} (min-max)")
        ax.set_xscale("log")
        ticks = [p["flops"] for p in ps]
        ax.set_xticks(ticks, [f"{t:.3g}" for t in ticks])
        ax.minorticks_off()  # the log axis' minor labels collide
        ax.set_xlabel("pretraining FLOPs (paper convention)")
        ax.set_ylabel("SST-2 dev accuracy (median, min-max)")
        ax.set_title(f"tiny, fine-tuned on {regime}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
