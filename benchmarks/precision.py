"""fp32 against bf16 autocast on this machine, side by side: does `precision = "auto"` want bf16 here?

    BENCH_DATA_DIR=../shared/data python benchmarks/precision.py --out precision.md
    BENCH_DATA_DIR=../shared/data python benchmarks/precision.py --steps 3 --max-train 200 --repeats 1  # a check

On a CPU, bench.train.hardware.CPU_BF16 decides whether "auto" takes bf16 where the CPU has native
bf16 (avx512_bf16 / amx_bf16): set it to True only where this script shows bf16 faster in both
parts at an unchanged dev score. On a GPU "auto" is bf16 already; the script works there too.

1. Pretraining: the harness's own loop (bench.train.pretrain.pretrain) on the tiny preset, electra
   and bert, `--steps` timed steps on the real corpus's first blocks (after 2 untimed warm-up steps
   per precision): seconds per step and tokens per second.
2. Fine-tuning: one checkpoint (electra pretrained `--ckpt-steps` steps in fp32, saved once), fine-tuned
   on SST-2 (`--max-train` examples, `--epochs`) with bench.train.finetune.finetune(mixed_precision=...):
   training wall time and the final dev accuracy.
Both precisions run in the same process, alternately (fp32 first in odd repeats, bf16 first in even
ones), `--repeats` times; each cell shows the median (and the range when repeats > 1). Nothing else
should run on the machine meanwhile. `--out FILE` writes the tables as markdown with the command,
the commit and the machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from tabulate import tabulate

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.train.hardware import CPU_BF16, CPU_BF16_FLAGS, cpu_flags, cpu_native_bf16  # noqa: E402

PRECISIONS = ("fp32", "bf16")


def _order(repeat: int) -> tuple[str, ...]:
    return PRECISIONS if repeat % 2 == 0 else PRECISIONS[::-1]


def _cell(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    mid = format(statistics.median(values), fmt)
    return mid if len(values) == 1 else f"{mid} ({format(min(values), fmt)}-{format(max(values), fmt)})"


def prepare(data_dir: Path | None, max_documents: int | None):
    from bench.data.pretrain_data import DataSpec, load_blocks, prepare_pretraining_data
    from models.sizes import SIZES

    size = SIZES["tiny"]
    spec = DataSpec(vocab_size=size.vocab_size, seq_len=size.seq_len, max_documents=max_documents)
    data = prepare_pretraining_data(spec, data_dir, progress=False)  # the machine's cache: once per machine
    return size, data, load_blocks(data)


def pretrain_steps(model: str, size, data, blocks: torch.Tensor, steps: int, precision: str, batch: int,
                   out_dir: Path, save=None):
    """One harness pretraining run of `steps` steps from a fixed initialisation; its PretrainResult."""
    from bench.registry import MODELS
    from bench.train.pretrain import OptimSettings, plan_pretraining, pretrain

    torch.manual_seed(0)
    backend = MODELS.get(model)(size, data.tokens, seq_len=size.seq_len)
    per_step = backend.flops_per_step(batch, size.seq_len, "paper").total
    plan = plan_pretraining(backend, budget_flops=steps * per_step, convention="paper", batch_size=batch,
                            seq_len=size.seq_len, warmup_fraction=size.warmup_fraction)
    return pretrain(backend, blocks, plan, OptimSettings(lr=size.pretrain_lr), pad_id=data.tokens.pad_id,
                    out_dir=out_dir, save=save or (lambda m, d: None), progress=False, resume=None,
                    precision=precision, compile=False, log_every=max(steps, 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=os.environ.get("BENCH_DATA_DIR"), help="BENCH_DATA_DIR")
    ap.add_argument("--models", default="electra,bert")
    ap.add_argument("--steps", type=int, default=20, help="timed pretraining steps per run")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-documents", type=int, default=None, help="read only the first N corpus documents")
    ap.add_argument("--ckpt-steps", type=int, default=100, help="fp32 pretraining steps of the fine-tuned checkpoint")
    ap.add_argument("--max-train", type=int, default=2000, help="SST-2 training examples (0: skip fine-tuning)")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=3, help="alternating repeats of every measurement")
    ap.add_argument("--out", type=Path, default=None, help="also write the tables as markdown here")
    args = ap.parse_args()

    from bench.registry import MODELS, TASKS
    from bench.train.finetune import FinetuneConfig, finetune

    size, data, blocks = prepare(args.data, args.max_documents)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    need = args.batch * (args.steps + 2)
    if len(blocks) < need:
        raise SystemExit(f"the corpus gave {len(blocks)} blocks, fewer than {need}: fewer --steps or more documents")

    pre: dict[tuple[str, str], dict[str, list[float]]] = {}
    fine: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        for model in models:  # warm-up: kernels, allocator, lazy imports, in both precisions
            for precision in PRECISIONS:
                pretrain_steps(model, size, data, blocks[: args.batch * 2], 2, precision, args.batch, tmp / "warm")
        for r in range(args.repeats):
            for model in models:
                for precision in _order(r):
                    res = pretrain_steps(model, size, data, blocks[:need], args.steps, precision, args.batch,
                                         tmp / "pt")
                    cell = pre.setdefault((model, precision), {"s_step": [], "tok_s": [], "loss": []})
                    cell["s_step"].append(res.wall_s / res.steps)
                    cell["tok_s"].append(res.tokens_per_s)
                    cell["loss"].append(res.final.get("loss", float("nan")))
                    print(f"pretrain {model} {precision} repeat {r + 1}: {res.wall_s / res.steps:.3f} s/step",
                          flush=True)

        if args.max_train:
            from bench.data.tokenizer import load_tokenizer

            tokenizer = load_tokenizer(data.tokenizer_dir)

            def save(encoder: torch.nn.Module, target: Path) -> None:
                encoder.save_pretrained(target, safe_serialization=True)
                tokenizer.save_pretrained(target)

            pretrain_steps("electra", size, data, blocks, args.ckpt_steps, "fp32", args.batch, tmp / "ckpt", save)
            checkpoint = tmp / "ckpt" / "ckpt-1"
            task = TASKS.get("sst2")
            cfg = FinetuneConfig(lr=size.finetune_lr, batch_size=size.finetune_batch, epochs=args.epochs,
                                 max_length=size.finetune_max_length, max_train_examples=args.max_train)
            for r in range(args.repeats):
                for precision in _order(r):
                    res = finetune(checkpoint, task, cfg, seed=0, data_dir=args.data, progress=False,
                                   mixed_precision="bf16" if precision == "bf16" else "no")
                    cell = fine.setdefault(precision, {"train_s": [], "score": [], "steps": []})
                    cell["train_s"].append(res.train_wall_s)
                    cell["score"].append(res.metrics[res.headline])
                    cell["steps"].append(res.steps)
                    print(f"finetune {precision} repeat {r + 1}: {res.train_wall_s:.1f} s, "
                          f"{res.headline} {res.metrics[res.headline]:.4f}", flush=True)

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else \
        f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    flags = sorted(cpu_flags() & set(CPU_BF16_FLAGS))
    head = (f"device: {device}; torch {torch.__version__}; native bf16 flags: {', '.join(flags) or 'none'} "
            f"(cpu_native_bf16: {cpu_native_bf16()}); hardware.CPU_BF16 = {CPU_BF16}; "
            f"{args.repeats} alternating repeats, median (range)")
    rows = []
    for model in models:
        f32, b16 = pre[(model, "fp32")], pre[(model, "bf16")]
        speed = statistics.median(f32["s_step"]) / statistics.median(b16["s_step"])
        rows.append([model, f"{args.batch}x{size.seq_len}", args.steps, _cell(f32["s_step"], ".3f"),
                     _cell(b16["s_step"], ".3f"), _cell(f32["tok_s"], ",.0f"), _cell(b16["tok_s"], ",.0f"),
                     f"{speed:.2f}x", _cell(f32["loss"], ".3f"), _cell(b16["loss"], ".3f")])
    pre_table = tabulate(rows, headers=["pretraining (tiny)", "batch", "steps", "fp32 s/step", "bf16 s/step",
                                        "fp32 tokens/s", "bf16 tokens/s", "bf16 speed-up", "fp32 loss",
                                        "bf16 loss"], tablefmt="github", disable_numparse=True)
    fine_table = ""
    if fine:
        f32, b16 = fine["fp32"], fine["bf16"]
        speed = statistics.median(f32["train_s"]) / statistics.median(b16["train_s"])
        fine_table = tabulate([[f"SST-2, {args.max_train} examples x {args.epochs:g} epoch(s), "
                                f"{int(f32['steps'][0])} steps", _cell(f32["train_s"], ".1f"),
                                _cell(b16["train_s"], ".1f"), f"{speed:.2f}x", _cell(f32["score"], ".4f"),
                                _cell(b16["score"], ".4f")]],
                              headers=["fine-tuning (electra, same checkpoint)", "fp32 train s", "bf16 train s",
                                       "bf16 speed-up", "fp32 dev acc", "bf16 dev acc"],
                              tablefmt="github", disable_numparse=True)
    print()
    print(head)
    print(pre_table)
    if fine_table:
        print()
        print(fine_table)
    if args.out is not None:
        try:
            commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                    text=True, timeout=10).stdout.strip() or "unknown"
        except (OSError, subprocess.SubprocessError):
            commit = "unknown"
        command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, ROOT), *sys.argv[1:]])
        import datetime

        fields = [f"- command: `{command}`", f"- date: {datetime.date.today().isoformat()}",
                  f"- machine: {platform.machine()} {'GPU' if torch.cuda.is_available() else 'CPU'}, "
                  f"{torch.get_num_threads()} threads", f"- commit: {commit}"]
        text = (f"### fp32 vs bf16 ({'GPU' if torch.cuda.is_available() else 'CPU'})\n\n" + "\n".join(fields)
                + f"\n\n{head}\n\n{pre_table}\n" + (f"\n{fine_table}\n" if fine_table else ""))
        args.out.write_text(text, encoding="utf-8")
        print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
