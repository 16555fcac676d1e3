"""Pretraining throughput per backend and preset, and (--baseline hf) the stock Hugging Face step beside it.

    python benchmarks/pretrain_speed.py --baseline hf                       # CPU: tiny, batch 32 x 128
    python benchmarks/pretrain_speed.py --sizes small,base --baseline hf    # a GPU: batch = the preset's

The harness side runs the harness's own loop (bench.train.pretrain.pretrain, compiled where
`--compile` says, bf16 where `--precision` says), so its numbers are what `bench run` gets.
The hf side is benchmarks/hf_baseline.py: the stock classes in a plain loop with the same
optimiser, batch, precision and data. The two are measured alternately, `--rounds` times,
and each keeps its best round: the speed-up ratio is the figure to report (absolute times on
shared machines drift between runs). MFU (on a GPU with a known peak) counts the same
analytic `executed` FLOPs of one step for both: the work the objective needs.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch
from tabulate import tabulate

from bench.registry import MODELS
from bench.train.flops import default_token_info
from bench.train.hardware import mfu, peak_flops
from bench.train.pretrain import OptimSettings, mixed_precision, make_optimizer, plan_pretraining, pretrain
from models.sizes import SIZES

try:  # run as a script from the repository root, or imported as benchmarks.pretrain_speed
    from hf_baseline import BASELINES
    from record import recorded
except ImportError:
    from benchmarks.hf_baseline import BASELINES
    from benchmarks.record import recorded


def random_blocks(vocab: int, rows: int, seq: int, device: torch.device | str = "cpu") -> torch.Tensor:
    tok = default_token_info(vocab)
    ids = torch.randint(104 if vocab > 103 else 5, vocab, (rows, seq), generator=torch.Generator().manual_seed(0))
    ids[:, 0], ids[:, -1] = tok.cls_id, tok.sep_id
    return ids.to(device)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def harness_round(backend: torch.nn.Module, blocks: torch.Tensor, steps: int, batch: int, seq: int, lr: float,
                  precision: str, compile: str) -> tuple[float, float | None, bool]:
    """(s/step, peak MB on a GPU, compiled) of `steps` steps of the harness's loop."""
    per_step = backend.flops_per_step(batch, seq, "paper").total
    plan = plan_pretraining(backend, budget_flops=steps * per_step, convention="paper", batch_size=batch,
                            seq_len=seq, warmup_fraction=0.1)
    tok = backend.tokens
    with tempfile.TemporaryDirectory() as tmp:
        r = pretrain(backend, blocks, plan, OptimSettings(lr=lr), pad_id=tok.pad_id, out_dir=Path(tmp),
                     save=lambda m, d: None, progress=False, resume=None, precision=precision, compile=compile,
                     log_every=max(steps, 1))
    return r.wall_s / r.steps, (r.peak_memory_mb if torch.cuda.is_available() else None), r.compiled


def hf_round(model: torch.nn.Module, optimizer: torch.optim.Optimizer, blocks: torch.Tensor, steps: int,
             batch: int, precision: str) -> tuple[float, float | None]:
    """(s/step, peak MB on a GPU) of `steps` steps of a plain loop over the stock classes."""
    device = blocks.device
    bf16 = mixed_precision(precision) == "bf16"  # the harness's own rule
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    sync()
    start = time.perf_counter()
    for s in range(steps):
        ids = blocks[(s * batch) % (len(blocks) - batch + 1):][:batch]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(ids, (ids != 0).long())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    final = float(loss.detach())  # what a user's loop logs at the end; also waits for the device
    wall = time.perf_counter() - start
    if not math.isfinite(final):
        raise RuntimeError("the HF baseline's loss is not finite")
    return wall / steps, (torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None)


def measure(model: str, size: str, batch: int, seq: int, steps: int, rounds: int, baseline: str | None,
            precision: str, compile: str) -> list[list[str]]:
    preset = SIZES[size]
    tok = default_token_info(preset.vocab_size)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    blocks = random_blocks(preset.vocab_size, batch * (steps + 2), seq)
    torch.manual_seed(0)
    ours = MODELS.get(model)(preset, tok, seq_len=seq)
    lr = preset.pretrain_lr
    harness_round(ours, blocks, 2, batch, seq, lr, precision, compile)  # warm-up: compilation, allocator, kernels
    hf = opt = None
    if baseline == "hf":
        torch.manual_seed(0)
        hf = BASELINES[model](preset, tok).to(device).train()
        opt = make_optimizer(hf, OptimSettings(lr=lr), fused=True)  # as the harness: the same optimiser
        hf_round(hf, opt, blocks.to(device), 2, batch, precision)
    best: dict[str, tuple[float, float | None]] = {}
    compiled = False
    for _ in range(rounds):  # alternately, so drift on a shared machine hits both sides alike
        s, mem, compiled = harness_round(ours, blocks, steps, batch, seq, lr, precision, compile)
        best["harness"] = min(best.get("harness", (math.inf, None)), (s, mem))
        if hf is not None:
            best["hf"] = min(best.get("hf", (math.inf, None)), hf_round(hf, opt, blocks.to(device), steps, batch,
                                                                        precision))
    executed = ours.flops_per_step(batch, seq, "executed").total
    bf16 = mixed_precision(precision) == "bf16"  # the harness's own rule
    tf32 = device.type == "cuda"
    peak = (peak_flops(torch.cuda.get_device_name(0), "bf16" if bf16 else ("tf32" if tf32 else "fp32"))
            if device.type == "cuda" else None)
    rows = []
    for impl, (s, mem) in best.items():
        util = mfu(executed / s, peak, world_size=1)  # one process: this script times one device
        name = "harness" + (" (compiled)" if compiled else "") if impl == "harness" else \
            f"hf ({getattr(hf, 'stock_class', 'ElectraForMaskedLM + ElectraForPreTraining')})"
        ratio = best["hf"][0] / s if "hf" in best else None
        rows.append([model, size, f"{batch}x{seq}", "bf16" if bf16 else "fp32", name, f"{s:.4f}",
                     f"{batch * seq / s:,.0f}", f"{ratio:.2f}x" if impl == "harness" and ratio else "",
                     f"{util:.1%}" if util is not None else "-", f"{mem:,.0f}" if mem is not None else "-"])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="tiny", help="comma-separated presets (small/base want a GPU)")
    ap.add_argument("--models", default="electra,bert")
    ap.add_argument("--batch", type=int, default=0, help="global batch (default: 32 on the CPU, the preset's on a GPU)")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds; each side keeps its best")
    ap.add_argument("--baseline", choices=["hf"], help="also time the stock Hugging Face step (hf_baseline.py)")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--compile", default="auto", choices=["auto", "true", "false"])
    ap.add_argument("--out", type=Path, help="also write the output as a results file (docs/results/)")
    args = ap.parse_args()
    with recorded(args.out, "Pretraining step speed against stock Hugging Face", preset=args.sizes):
        _main(args)


def _main(args: argparse.Namespace) -> None:
    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if cuda else f"cpu ({torch.get_num_threads()} threads)"
    rows = []
    for s in args.sizes.split(","):
        batch = args.batch or (SIZES[s].pretrain_batch if cuda else 32)
        for m in args.models.split(","):
            rows += measure(m, s, batch, args.seq, args.steps, args.rounds, args.baseline, args.precision,
                            args.compile)
    print(f"device: {device}; torch {torch.__version__}; best of {args.rounds} alternating rounds of "
          f"{args.steps} steps")
    print(tabulate(rows, headers=["model", "size", "batch", "precision", "step", "s/step", "tokens/s",
                                  "speed-up vs hf", "MFU", "peak MB"], tablefmt="github", disable_numparse=True))


if __name__ == "__main__":
    main()
