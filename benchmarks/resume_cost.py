"""What writing a resume state costs, against the pretraining step it interrupts.

For each model and size: the time of one optimiser step (random full blocks), the time to
write and to read back a resume state (model, optimiser, RNG, a logged series as long as the
run's), the state's size on disk, and the share of a run's time the default triggers cost
(`[pretrain] resume_every_steps` and `resume_every_minutes`, whichever fires more often).

    python benchmarks/resume_cost.py                      # tiny, electra and bert
    python benchmarks/resume_cost.py --sizes tiny,small --steps 5
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch
from tabulate import tabulate

from bench.backend import TokenInfo
from bench.config import PretrainSettings
from bench.registry import MODELS
from bench.results.store import Metric
from bench.train.pretrain import MAX_SAVE_SHARE, OptimSettings, make_optimizer
from bench.train.resume import LoopState, load_state, save_state
from models.sizes import get_size

try:  # run as a script (benchmarks/ on the path), or imported as benchmarks.<name>
    from record import recorded
except ImportError:
    from benchmarks.record import recorded

TOKENS = TokenInfo(vocab_size=8192, pad_id=0, mask_id=4, cls_id=2, sep_id=3, unk_id=1)


def measure(model_name: str, size_name: str, steps: int, batch: int | None) -> dict:
    size = get_size(size_name)
    batch = batch or size.pretrain_batch
    torch.manual_seed(0)
    backend = MODELS.get(model_name)(size, TOKENS, seq_len=size.seq_len)
    optimizer = make_optimizer(backend, OptimSettings(lr=size.pretrain_lr))
    ids = torch.randint(5, TOKENS.vocab_size, (batch, size.seq_len))
    batch_in = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def step() -> dict[str, float]:
        out = backend(batch_in)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return out.metrics

    metrics = step()  # warm-up, and optimiser state exists from here on
    start = time.perf_counter()
    for _ in range(steps):
        step()
    step_s = (time.perf_counter() - start) / steps

    defaults = PretrainSettings()
    planned = 1_000_000  # a paper-length run's logged series: one entry per metric every 10 steps
    series = [Metric(k, float(v), step=s, flops=s * 1e12, wall_s=s * step_s) for s in range(10, planned + 1, 10)
              for k, v in metrics.items()]
    loop = LoopState(step=planned, series=series)
    folder = Path(tempfile.mkdtemp())
    try:
        start = time.perf_counter()
        save_state(folder, model=backend, optimizer=optimizer, loop=loop, plan_key="bench")
        save_s = time.perf_counter() - start
        size_mb = sum(p.stat().st_size for p in (folder / "resume").iterdir()) / 2**20
        start = time.perf_counter()
        load_state(folder, model=backend, optimizer=optimizer, plan_key="bench")
        load_s = time.perf_counter() - start
    finally:
        shutil.rmtree(folder)
    # whichever trigger fires first, held back to MAX_SAVE_SHARE of the time (bench.train.pretrain)
    every_s = max(min(defaults.resume_every_steps * step_s, defaults.resume_every_minutes * 60),
                  save_s / MAX_SAVE_SHARE)
    return {"model": model_name, "size": size_name, "batch": f"{batch}x{size.seq_len}", "s/step": f"{step_s:.3f}",
            "save s": f"{save_s:.2f}", "load s": f"{load_s:.2f}", "state MB": f"{size_mb:.0f}",
            "series entries": f"{len(series):,}", "default overhead": f"{save_s / every_s:.2%}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="electra,bert")
    parser.add_argument("--sizes", default="tiny")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per configuration")
    parser.add_argument("--batch", type=int, default=None, help="sequences per step (default: the preset's)")
    parser.add_argument("--out", type=Path, help="also write the output as a results file (docs/results/)")
    args = parser.parse_args()
    with recorded(args.out, "What a resume state costs"):
        rows = [measure(m, s, args.steps, args.batch) for s in args.sizes.split(",") for m in args.models.split(",")]
        print(tabulate(rows, headers="keys", tablefmt="github"))
        d = PretrainSettings()
        print(f"\ndefault triggers: every {d.resume_every_steps} steps or {d.resume_every_minutes:g} minutes, "
              f"whichever comes first, never more often than {1 / MAX_SAVE_SHARE:.0f}x the last save's time; overhead = "
              f"save time / time between saves. The series is sized for a 1M-step run logged every 10 steps (its "
              f"worst case).")


if __name__ == "__main__":
    main()
