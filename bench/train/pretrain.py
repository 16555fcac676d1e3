"""The pretraining loop: a backend, packed blocks and a FLOP budget -> a trained encoder.

The number of steps follows from the budget and the backend's analytic cost per step, so the
learning-rate schedule knows its end before the first step, and every model in a comparison
spends the same FLOPs to within one step.
"""

from __future__ import annotations

import resource
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

from bench.backend import CONVENTIONS, Backend
from bench.train.flops import steps_for_budget  # noqa: F401 - the one budget-to-steps rule, re-exported
from bench.train.schedule import linear_schedule
from bench.results.store import Metric


@dataclass(frozen=True)
class OptimSettings:
    lr: float
    weight_decay: float = 0.01
    adam_eps: float = 1e-6
    max_grad_norm: float = 1.0


@dataclass(frozen=True)
class PretrainPlan:
    """What a pretraining run will do, decided before it starts."""

    budget_flops: float
    convention: str
    batch_size: int
    seq_len: int
    steps: int  # for a time budget: 0, the loop runs until `time_budget_s` has passed
    flops_per_step: dict[str, float]  # convention -> analytic FLOPs of one optimiser step
    checkpoint_steps: dict[float, int]  # budget fraction -> step after which the encoder is saved
    time_budget_s: float | None = None  # matched wall-clock instead of matched FLOPs
    warmup_fraction: float = 0.0  # share of the budget (steps or seconds) spent warming up

    def flops_at(self, step: int, convention: str | None = None) -> float:
        return step * self.flops_per_step[convention or self.convention]


def checkpoint_dir(run_dir: Path, fraction: float) -> Path:
    """Where the encoder saved after `fraction` of the budget lives: run_dir/ckpt-<fraction>."""
    return run_dir / f"ckpt-{fraction:g}"


def plan_pretraining(backend: Backend, *, budget_flops: float, convention: str, batch_size: int, seq_len: int,
                     warmup_fraction: float, checkpoint_fractions: tuple[float, ...] = (1.0,),
                     time_budget_s: float | None = None) -> PretrainPlan:
    per_step = {c: backend.flops_per_step(batch_size, seq_len, c).total for c in CONVENTIONS}
    fractions = sorted(set(checkpoint_fractions) | {1.0})
    if time_budget_s is not None:  # matched time: steps follow from speed; checkpoints from the clock
        return PretrainPlan(budget_flops=0.0, convention=convention, batch_size=batch_size, seq_len=seq_len,
                            steps=0, flops_per_step=per_step,
                            checkpoint_steps={f: 0 for f in fractions}, time_budget_s=time_budget_s,
                            warmup_fraction=warmup_fraction)
    steps = steps_for_budget(budget_flops, per_step[convention])
    return PretrainPlan(
        budget_flops=budget_flops,
        convention=convention,
        batch_size=batch_size,
        seq_len=seq_len,
        steps=steps,
        flops_per_step=per_step,
        checkpoint_steps={f: steps_for_budget(f * budget_flops, per_step[convention]) for f in fractions},
        warmup_fraction=warmup_fraction,
    )


@dataclass
class PretrainResult:
    steps: int
    wall_s: float
    tokens: int
    tokens_per_s: float
    flops: dict[str, float]
    final: dict[str, float]  # last logging window's metrics
    series: list[Metric] = field(default_factory=list)
    checkpoints: dict[float, Path] = field(default_factory=dict)
    checkpoint_points: dict[float, tuple[int, float]] = field(default_factory=dict)  # fraction -> (step, FLOPs)
    peak_memory_mb: float = 0.0
    mfu: float | None = None  # model-FLOPs utilisation on a GPU with a known peak

    def metrics(self) -> list[Metric]:
        """Final values (step None) then the logged series, ready for the store."""
        out = [
            Metric("steps", self.steps),
            Metric("wall_s", self.wall_s),
            Metric("tokens", self.tokens),
            Metric("tokens_per_s", self.tokens_per_s),
            Metric("achieved_flops_per_s", self.flops["executed"] / self.wall_s if self.wall_s > 0 else 0.0),
            Metric("peak_memory_mb", self.peak_memory_mb),
        ]
        if self.mfu is not None:
            out.append(Metric("mfu", self.mfu))
        out += [Metric(f"flops_{c}", v) for c, v in self.flops.items()]
        out += [Metric(f"final_{k}", v) for k, v in self.final.items()]
        out += [Metric("checkpoint", f, step=s, flops=fl) for f, (s, fl) in sorted(self.checkpoint_points.items())]
        return out + self.series


def make_optimizer(model: torch.nn.Module, opt: OptimSettings) -> torch.optim.Optimizer:
    """AdamW with no decay on biases and LayerNorm; shared (tied) parameters appear once."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():  # named_parameters() drops duplicates of tied tensors
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": opt.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=opt.lr, eps=opt.adam_eps, betas=(0.9, 0.999))


def pretrain(backend: Backend, blocks: torch.Tensor, plan: PretrainPlan, opt: OptimSettings, *, pad_id: int,
             out_dir: Path, save: Callable[[torch.nn.Module, Path], None], seed: int = 0, log_every: int = 10,
             precision: str = "auto", progress: bool = True, label: str = "pretrain") -> PretrainResult:
    """Train `backend` for `plan.steps` steps on `blocks` ([N, seq_len] token ids).

    `save(encoder, dir)` writes a checkpoint (the encoder plus the tokenizer) into `dir`; it
    is called at each of `plan.checkpoint_steps`, into `out_dir/ckpt-<fraction>`.
    """
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    mixed = _mixed_precision(precision)
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=mixed)
    torch.manual_seed(seed)
    world = accelerator.num_processes
    if plan.batch_size % world:
        raise ValueError(f"batch size {plan.batch_size} is not divisible by {world} processes")
    if len(blocks) < plan.batch_size:
        raise ValueError(f"only {len(blocks)} blocks of text, fewer than one batch of {plan.batch_size}")
    sampler_gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(TensorDataset(blocks), batch_size=plan.batch_size // world, drop_last=True,
                        sampler=RandomSampler(blocks, generator=sampler_gen))
    optimizer = make_optimizer(backend, opt)
    model, optimizer, loader = accelerator.prepare(backend, optimizer, loader)
    model.train()
    timed = plan.time_budget_s is not None
    # One schedule for both budgets: in steps for FLOPs, in seconds for wall-clock.
    total = plan.time_budget_s if timed else plan.steps
    schedule = linear_schedule(plan.warmup_fraction * total, total)
    base_lrs = [g["lr"] for g in optimizer.param_groups]

    series: list[Metric] = []
    window: dict[str, list[float]] = {}
    final: dict[str, float] = {}
    checkpoints: dict[float, Path] = {}
    points: dict[float, tuple[int, float]] = {}
    pending = sorted(plan.checkpoint_steps.items(), key=lambda kv: (kv[1], kv[0]))  # (fraction, step)
    bar = tqdm(total=int(total), desc=label, unit="s" if timed else "step", dynamic_ncols=True,
               disable=not progress or not accelerator.is_main_process)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    step, tokens, lr = 0, 0, 0.0
    start = time.perf_counter()
    done = False
    while not done:
        for (batch_ids,) in loader:
            elapsed = time.perf_counter() - start
            factor = schedule(elapsed if timed else step + 0.5)  # mid-step: neither end wastes a step at lr 0
            for g, base in zip(optimizer.param_groups, base_lrs):
                g["lr"] = lr = base * factor
            input_ids = batch_ids.long()
            batch = {"input_ids": input_ids, "attention_mask": (input_ids != pad_id).long()}
            with accelerator.autocast():
                out = model(batch)
            accelerator.backward(out.loss)
            if opt.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), opt.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            tokens += int(batch["attention_mask"].sum()) * world
            elapsed = time.perf_counter() - start
            done = elapsed >= plan.time_budget_s if timed else step >= plan.steps
            if timed and world > 1:  # every rank must stop at the same step
                flag = torch.tensor(float(done), device=accelerator.device)
                done = bool(accelerator.reduce(flag, reduction="max").item())
            for k, v in out.metrics.items():
                window.setdefault(k, []).append(float(v))
            if step % log_every == 0 or done:
                final = {k: sum(v) / len(v) for k, v in window.items()}
                final["lr"] = lr
                window = {}
                for k, v in final.items():
                    series.append(Metric(k, v, step=step, flops=plan.flops_at(step), wall_s=elapsed))
                bar.set_postfix({k: f"{final[k]:.3f}" for k in list(final)[:3]})
            bar.update(int(elapsed) - bar.n if timed else 1)
            # Save every checkpoint whose share of the budget (FLOPs or time) is now spent.
            while pending and (done or (elapsed >= pending[0][0] * total if timed else step >= pending[0][1])):
                frac, _ = pending.pop(0)
                points[frac] = (step, plan.flops_at(step))
                if accelerator.is_main_process:
                    checkpoints[frac] = atomic_save(accelerator.unwrap_model(model), checkpoint_dir(out_dir, frac), save)
            accelerator.wait_for_everyone()
            if done:
                break
    wall = time.perf_counter() - start
    bar.close()
    achieved = plan.flops_at(step, "executed") / wall if wall > 0 else 0.0
    return PretrainResult(
        steps=step,
        wall_s=wall,
        tokens=tokens,
        tokens_per_s=tokens / wall if wall > 0 else 0.0,
        flops={c: plan.flops_at(step, c) for c in CONVENTIONS},
        final=final,
        series=series,
        checkpoints=checkpoints,
        checkpoint_points=points,
        peak_memory_mb=_peak_memory_mb(),
        mfu=_mfu(achieved, mixed),
    )


def atomic_save(model: Backend, target: Path, save: Callable[[torch.nn.Module, Path], None]) -> Path:
    """Write into a temporary folder and rename, so no half checkpoint is ever left behind."""
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save(model.encoder(), tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def _mixed_precision(precision: str) -> str:
    if precision == "bf16":
        return "bf16"
    if precision == "auto" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def _peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _mfu(achieved_flops_per_s: float, mixed: str) -> float | None:
    if not torch.cuda.is_available():
        return None
    from bench.train.hardware import peak_flops

    tf32 = torch.backends.cuda.matmul.allow_tf32
    peak = peak_flops(torch.cuda.get_device_name(0), "bf16" if mixed == "bf16" else ("tf32" if tf32 else "fp32"))
    return achieved_flops_per_s / peak if peak else None
