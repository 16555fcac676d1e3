"""Analytic `executed` FLOPs vs FlopCounterMode on a real step, and the paper-convention totals.

    python benchmarks/flops_agreement.py [--batch 4] [--seq 128] [--threads 1]

Builds each backend at the preset's real vocabulary, runs one forward + backward under
FlopCounterMode, and prints the ratio (DESIGN: must be within 5%).
"""

from __future__ import annotations

import argparse
import time

import torch
from tabulate import tabulate

from bench.train.flops import default_token_info, measure_step_flops, paper_script_flops
from bench.registry import MODELS
from models.sizes import SIZES


def random_batch(vocab: int, batch: int, seq: int) -> dict[str, torch.Tensor]:
    tok = default_token_info(vocab)
    ids = torch.randint(104 if vocab > 103 else 5, vocab, (batch, seq))
    ids[:, 0], ids[:, -1] = tok.cls_id, tok.sep_id
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def pretraining_models() -> list[str]:
    """Every registered backend that trains (built-ins and installed plug-ins), `scratch` excepted."""
    return [e.name for e in MODELS.entries() if getattr(MODELS.get(e.name), "pretrains", True)]


def agreement(batch: int, seq: int) -> list[list]:
    rows = []
    for size in ("tiny", "small"):
        preset = SIZES[size]
        for model in pretraining_models():
            torch.manual_seed(0)
            backend = MODELS.get(model)(preset, default_token_info(preset.vocab_size), seq_len=seq)
            analytic = backend.flops_per_step(batch, seq, "executed").total
            t = time.perf_counter()
            measured = measure_step_flops(backend, random_batch(preset.vocab_size, batch, seq))
            rows.append([model, size, f"{batch}x{seq}", f"{analytic:.4e}", f"{measured:.4e}",
                         f"{measured / analytic:.6f}", f"{time.perf_counter() - t:.1f}"])
    return rows


def paper_totals() -> list[list]:
    rows = []
    script = paper_script_flops()
    for model, size, steps, batch, seq, ref in [
        ("electra", "small", 1_000_000, 128, 128, script["electra_small"]),
        ("bert", "small", 1_450_000, 128, 128, script["bert_small"]),
        ("electra", "base", 766_000, 256, 512, script["electra_base"]),
    ]:
        preset = SIZES[size]
        per = MODELS.get(model).analytic_step_flops(preset, preset.vocab_size, batch, seq, "paper").total
        rows.append([model, size, f"{steps:,}", f"{batch}x{seq}", f"{per * steps:.4e}", f"{ref:.4e}", f"{per * steps:.3g}"])
    return rows


def per_step_table(batch: int, seq: int) -> list[list]:
    rows = []
    for size in ("tiny", "small", "base"):
        preset = SIZES[size]
        for model in pretraining_models():
            cls = MODELS.get(model)
            row = [model, size, f"{batch}x{seq}"]
            for conv in ("paper", "executed"):
                row.append(f"{cls.analytic_step_flops(preset, preset.vocab_size, batch, seq, conv).total:.4e}")
            rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)  # on a busy 2-core machine, 1 thread is much faster

    print("Executed convention: analytic vs FlopCounterMode (one real forward + backward)")
    print(tabulate(agreement(args.batch, args.seq),
                   headers=["model", "size", "batch", "analytic", "measured", "measured/analytic", "s"], disable_numparse=True))
    print()
    print("Paper convention (port of google-research/electra flops_computation.py) vs the script's own entries")
    print(tabulate(paper_totals(), headers=["model", "size", "steps", "batch", "harness", "script", "3 s.f."], disable_numparse=True))
    print()
    print("FLOPs per training step at the presets' vocabularies")
    print(tabulate(per_step_table(32, 128), headers=["model", "size", "batch", "paper", "executed"], disable_numparse=True))


if __name__ == "__main__":
    main()
