"""Pretraining runs of a results store, as a speed table: steps, wall-clock, steps/s, tokens/s, MFU.

    python benchmarks/run_summary.py --results gpu_check/results [--phases]

What `benchmarks/gpu_check.sh` prints after its `bench run`; the scores are in `bench report`. With
`--phases`, also where a run's wall-clock went, from the store's own timings: each pretraining run,
and the fine-tuning runs' training, evaluation and the rest (loading the checkpoint and the data).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tabulate import tabulate

from bench.results.store import Store
from bench.results.tidy import elapsed


def _device(env: dict) -> str:
    """The device, with the process count under DDP ("2 x NVIDIA H100"): MFU is per device."""
    processes = int(env.get("processes", 1) or 1)
    device = env.get("device", "")
    return f"{processes} x {device}" if processes > 1 else device


def phases(store: Store, finals: dict[str, dict[str, float]]) -> str:
    """Where the wall-clock went: each pretraining run, then fine-tuning's training, evaluation and the rest.
    `finals`: the store's all_final_metrics()."""
    rows = []
    for r in store.runs(kind="pretrain"):
        m = finals.get(r["id"], {})
        if m.get("steps"):
            rows.append([f"pretraining {r['model']} ({int(m['steps']):,} steps)", f"{m.get('wall_s', 0):,.0f}"])
    tuned = store.runs(kind="finetune")
    if tuned:
        metrics = [finals.get(r["id"], {}) for r in tuned]
        train = sum(m.get("train_wall_s", 0.0) for m in metrics)
        evaluate = sum(m.get("eval_wall_s", 0.0) for m in metrics)
        total = sum(elapsed(r["started_at"], r["finished_at"]) or 0.0 for r in tuned)
        steps = sum(int(m.get("steps", 0)) for m in metrics)
        rows += [[f"fine-tuning: {len(tuned)} runs, {steps:,} steps, training", f"{train:,.0f}"],
                 ["fine-tuning: evaluation", f"{evaluate:,.0f}"],
                 ["fine-tuning: the rest (loading the checkpoint and the data)", f"{max(total - train - evaluate, 0):,.0f}"]]
    return tabulate(rows, headers=["phase", "seconds"], tablefmt="github", disable_numparse=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default="results", help="results folder holding bench.db")
    ap.add_argument("--phases", action="store_true", help="also where the wall-clock went (pretraining, fine-tuning)")
    args = ap.parse_args()
    rows = []
    with Store(Path(args.results) / "bench.db") as store:
        finals = store.all_final_metrics()  # one query for both tables
        table_phases = phases(store, finals) if args.phases else ""
        for r in store.runs(kind="pretrain", status=None):
            m = finals.get(r["id"], {})
            steps, wall = m.get("steps", 0), m.get("wall_s", 0.0)
            if not steps:
                continue  # controls and unfinished runs
            rows.append([r["model"], r["size"], r["status"], int(steps), f"{m.get('planned_steps', 0):.0f}",
                         f"{wall:,.0f}", f"{steps / wall:.2f}" if wall else "-", f"{m.get('tokens_per_s', 0):,.0f}",
                         f"{m['mfu']:.1%}" if "mfu" in m else "-", f"{m.get('peak_memory_mb', 0):,.0f}",
                         "yes" if m.get("compiled") else "no", _device(r["environment"])])
    print(tabulate(rows, headers=["model", "size", "status", "steps", "planned", "wall s", "steps/s", "tokens/s",
                                  "MFU per device", "peak MB", "compiled", "device"],
                   tablefmt="github", disable_numparse=True))
    if table_phases:
        print()
        print(table_phases)


if __name__ == "__main__":
    main()
