"""Pretraining throughput per backend and preset: s/step, tokens/s, achieved FLOP/s, MFU, memory.

    python benchmarks/pretrain_speed.py [--sizes tiny] [--batch 32] [--steps 20] [--warmup 3]

Runs the harness's own loop (bench.train.pretrain.pretrain) on random full blocks, so the numbers are
what `bench run` gets. On a GPU with a known peak (bench/hardware.py) MFU is printed too.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from tabulate import tabulate

from bench.train.flops import default_token_info
from bench.train.pretrain import OptimSettings, plan_pretraining, pretrain
from bench.registry import MODELS
from models.sizes import SIZES


def measure(model: str, size: str, batch: int, steps: int, warmup: int, seq: int) -> list:
    preset = SIZES[size]
    tok = default_token_info(preset.vocab_size)
    torch.manual_seed(0)
    backend = MODELS.get(model)(preset, tok, seq_len=seq)
    ids = torch.randint(104 if preset.vocab_size > 103 else 5, preset.vocab_size, (batch * (steps + warmup), seq))
    ids[:, 0], ids[:, -1] = tok.cls_id, tok.sep_id
    per_step = backend.flops_per_step(batch, seq, "paper").total
    opt = OptimSettings(lr=preset.pretrain_lr)
    with tempfile.TemporaryDirectory() as tmp:
        warm = plan_pretraining(backend, budget_flops=warmup * per_step, convention="paper", batch_size=batch,
                                seq_len=seq, warmup_fraction=0.1)
        pretrain(backend, ids, warm, opt, pad_id=tok.pad_id, out_dir=Path(tmp), save=lambda m, d: None,
                 progress=False, resume=None)  # warm-up: allocator, kernels, first-step overheads
        plan = plan_pretraining(backend, budget_flops=steps * per_step, convention="paper", batch_size=batch,
                                seq_len=seq, warmup_fraction=0.1)
        r = pretrain(backend, ids, plan, opt, pad_id=tok.pad_id, out_dir=Path(tmp), save=lambda m, d: None,
                     progress=False, resume=None)
    return [model, size, f"{batch}x{seq}", r.steps, f"{r.wall_s / r.steps:.3f}", f"{r.tokens_per_s:,.0f}",
            f"{r.flops['executed'] / r.wall_s:.3g}", f"{r.mfu:.1%}" if r.mfu is not None else "-",
            f"{r.peak_memory_mb:,.0f}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="tiny", help="comma-separated presets (small/base want a GPU)")
    ap.add_argument("--models", default="electra,bert")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    rows = [measure(m, s, args.batch, args.steps, args.warmup, args.seq)
            for s in args.sizes.split(",") for m in args.models.split(",")]
    print(f"device: {device}")
    print(tabulate(rows, headers=["model", "size", "batch", "steps", "s/step", "tokens/s", "achieved FLOP/s",
                                  "MFU", "peak MB"], tablefmt="github", disable_numparse=True))


if __name__ == "__main__":
    main()
