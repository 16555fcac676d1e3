"""Pretraining runs of a results store, as a speed table: steps, wall-clock, steps/s, tokens/s, MFU.

    python benchmarks/run_summary.py --results gpu_check/results

What `benchmarks/gpu_check.sh` prints after its `bench run`; the scores are in `bench report`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tabulate import tabulate

from bench.results.store import Store


def _device(env: dict) -> str:
    """The device, with the process count under DDP ("2 x NVIDIA H100"): MFU is per device."""
    processes = int(env.get("processes", 1) or 1)
    device = env.get("device", "")
    return f"{processes} x {device}" if processes > 1 else device


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default="results", help="results folder holding bench.db")
    args = ap.parse_args()
    rows = []
    with Store(Path(args.results) / "bench.db") as store:
        for r in store.runs(kind="pretrain", status=None):
            m = store.final_metrics(r["id"])
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


if __name__ == "__main__":
    main()
