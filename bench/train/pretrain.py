"""The pretraining loop: a backend, packed blocks and a FLOP budget -> a trained encoder.

The number of steps follows from the budget and the backend's analytic cost per step, so the
learning-rate schedule knows its end before the first step, and every model in a comparison
spends the same FLOPs to within one step.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import signal
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from bench.backend import CONVENTIONS, Backend
from bench.errors import ConfigError, DataError, Interrupted, RunFailure
from bench.train.resume import LoopState, load_state, plan_key, save_state
from bench.objectives.draws import RowRandom
from bench.train.memory import peak_memory_mb, reset_peak_memory
from bench.train.flops import steps_for_budget  # noqa: F401 - the one budget-to-steps rule, re-exported
from bench.train.schedule import schedule_for
from bench.results.store import Metric

if TYPE_CHECKING:
    from bench.tracking import RunTracker


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
    schedule: str = "linear"  # linear (ELECTRA's) or triangle (Cramming's one-cycle): the backend's recipe

    def flops_at(self, step: int, convention: str | None = None) -> float:
        return step * self.flops_per_step[convention or self.convention]


def checkpoint_dir(run_dir: Path, fraction: float) -> Path:
    """Where the encoder saved after `fraction` of the budget lives: run_dir/ckpt-<fraction>."""
    return run_dir / f"ckpt-{fraction:g}"


def plan_pretraining(backend: Backend, *, budget_flops: float, convention: str, batch_size: int, seq_len: int,
                     warmup_fraction: float, checkpoint_fractions: tuple[float, ...] = (1.0,),
                     time_budget_s: float | None = None, schedule: str | None = None) -> PretrainPlan:
    """The run decided before it starts. `schedule`: the learning-rate schedule; None = the one of the
    recipe the backend was built with (its size preset's `schedule`, bench.objectives.recipe), else linear."""
    if schedule is None:
        schedule = getattr(getattr(backend, "size", None), "schedule", "linear")
    per_step = {c: backend.flops_per_step(batch_size, seq_len, c).total for c in CONVENTIONS}
    fractions = sorted(set(checkpoint_fractions) | {1.0})
    if time_budget_s is not None:  # matched time: steps follow from speed; checkpoints from the clock
        return PretrainPlan(budget_flops=0.0, convention=convention, batch_size=batch_size, seq_len=seq_len,
                            steps=0, flops_per_step=per_step,
                            checkpoint_steps={f: 0 for f in fractions}, time_budget_s=time_budget_s,
                            warmup_fraction=warmup_fraction, schedule=schedule)
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
        schedule=schedule,
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
    resumed_from_step: int = 0  # 0: this attempt started from scratch
    resume_saves: int = 0  # resume states written, all attempts
    compiled: bool = False  # the step ran under torch.compile
    precision: str = "fp32"  # what ran: "bf16" (autocast) or "fp32", whatever the setting ("auto") was

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
        out += [Metric("resumed_from_step", self.resumed_from_step), Metric("resume_saves", self.resume_saves),
                Metric("compiled", float(self.compiled)),
                Metric("bf16", float(self.precision == "bf16"))]  # the resolved precision: 1 = bf16 autocast ran
        out += [Metric(f"flops_{c}", v) for c, v in self.flops.items()]
        out += [Metric(f"final_{k}", v) for k, v in self.final.items()]
        out += [Metric("checkpoint", f, step=s, flops=fl) for f, (s, fl) in sorted(self.checkpoint_points.items())]
        return out + self.series


def make_optimizer(model: torch.nn.Module, opt: OptimSettings, *, fused: bool = False) -> torch.optim.Optimizer:
    """AdamW with no decay on biases and LayerNorm; shared (tied) parameters appear once.
    `fused`: one kernel for the whole update (CUDA and CPU), instead of a loop over tensors."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():  # named_parameters() drops duplicates of tied tensors
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": opt.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=opt.lr, eps=opt.adam_eps, betas=(0.9, 0.999), fused=fused or None)


MAX_SAVE_SHARE = 0.02  # resume states may take at most this share of a run's time, whatever the triggers say


@dataclass(frozen=True)
class ResumeSettings:
    """When the loop writes its resume state (besides on SIGINT/SIGTERM); 0 turns a trigger off.

    Either trigger is held back while the time since the last state is under 50 times what
    that state took to write, so saving costs at most MAX_SAVE_SHARE of the run on any device.
    """

    every_steps: int = 200
    every_minutes: float = 10.0


class BlockOrder:
    """One global order of the blocks, reshuffled every epoch from (seed, epoch) alone.

    Step s trains on rows [s*B, (s+1)*B) of its epoch's permutation, so the data a step sees
    depends only on the seed and the step: a resumed run (or, later, N processes each taking
    a slice of the global batch) sees the same tokens at the same step.
    """

    def __init__(self, num_blocks: int, batch_size: int, seed: int, device: torch.device | str = "cpu") -> None:
        self.num_blocks, self.batch_size, self.seed, self.device = num_blocks, batch_size, seed, device
        self.per_epoch = num_blocks // batch_size
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def indices(self, step: int) -> torch.Tensor:
        epoch, i = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            # drawn on the CPU (the same order on any device), moved once per epoch: no copy in the step
            self._epoch, self._perm = epoch, torch.randperm(self.num_blocks, generator=gen).to(self.device)
        return self._perm[i * self.batch_size:(i + 1) * self.batch_size]


class _Signals:
    """While active, SIGINT and SIGTERM only set `received`: the loop stops after the step in
    flight, writes its resume state, then raises. A second signal interrupts at once."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:
            raise Interrupted(signum, "a second signal: stopped at once")
        self.received = signum

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def pretrain(backend: Backend, blocks: torch.Tensor, plan: PretrainPlan, opt: OptimSettings, *, pad_id: int,
             out_dir: Path, save: Callable[[torch.nn.Module, Path], None], seed: int = 0, log_every: int = 10,
             precision: str = "auto", progress: bool = True, label: str = "pretrain",
             resume: ResumeSettings | None = ResumeSettings(), compile: bool | str = False,
             tracking: RunTracker | None = None) -> PretrainResult:
    """Train `backend` for `plan.steps` steps on `blocks` ([N, seq_len] token ids).

    `save(encoder, dir)` writes a checkpoint (the encoder plus the tokenizer) into `dir`; it
    is called at each of `plan.checkpoint_steps`, into `out_dir/ckpt-<fraction>`. With
    `resume`, the loop continues from `out_dir/resume/` when a state is there, and writes one
    every `resume.every_steps` steps, every `resume.every_minutes` minutes and on SIGINT or
    SIGTERM (then raising `Interrupted`). A non-finite loss or gradient raises `Diverged`
    at the next boundary; the last resume state (from before) is kept. `compile`: torch.compile
    the step (True/"true"), not (False/"false"), or "auto": on a GPU, falling back to eager
    with a one-line warning when compilation fails.
    `tracking` (bench.tracking): every logged point also goes to the run's experiment trackers,
    against step and against FLOPs; they never change what is trained.
    """
    from tqdm.auto import tqdm

    from bench.train.hardware import fresh_accelerator

    mixed = mixed_precision(precision)
    # fresh: this run's precision, whatever an earlier Accelerator in this process (fine-tuning) chose
    accelerator = fresh_accelerator(cpu=not torch.cuda.is_available(), mixed_precision=mixed,
                                    **(tracking.accelerator_kwargs() if tracking is not None else {}))
    if tracking is not None:
        tracking.start(accelerator)  # main process only; a failing tracker warns and is dropped
    world, rank = accelerator.num_processes, accelerator.process_index
    torch.manual_seed(seed + rank)  # dropout: each process its own stream (rank 0: the 1-process one)
    if plan.batch_size % world:
        raise ConfigError(f"pretrain.batch_size = {plan.batch_size} is not divisible by {world} processes")
    if len(blocks) < plan.batch_size:
        raise DataError(f"only {len(blocks)} blocks of text, fewer than one batch of {plan.batch_size}: use a larger "
                        f"corpus or a smaller pretrain.batch_size")
    if accelerator.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True  # fp32 matmuls on tensor cores
    blocks = blocks.to(accelerator.device)  # once: no host copy or DataLoader worker in the step
    order = BlockOrder(len(blocks), plan.batch_size, seed, accelerator.device)
    per_rank = plan.batch_size // world
    # masking and sampling: draws of the global batch, each process computing its rows (RowRandom)
    rng = RowRandom(seed * 1_000_003 + 7919, offset=rank * per_rank, rows=per_rank, total=plan.batch_size,
                    device=accelerator.device)
    optimizer = make_optimizer(backend, opt, fused=accelerator.device.type in ("cuda", "cpu"))
    model, optimizer = accelerator.prepare(backend, optimizer)
    model.train()
    timed = plan.time_budget_s is not None
    # One schedule for both budgets: in steps for FLOPs, in seconds for wall-clock.
    total = plan.time_budget_s if timed else plan.steps
    schedule = schedule_for(plan.schedule, plan.warmup_fraction * total, total)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    key = plan_key(plan)

    state = LoopState()
    if resume is not None:
        state = load_state(out_dir, model=accelerator.unwrap_model(model), optimizer=optimizer, plan_key=key) or state
        _restore_rng(state.rng, rng, rank)
    resumed_from = state.step

    def batch_at(step: int) -> dict[str, Any]:
        """This process's slice of the global batch of `step`."""
        from bench.data.pretrain_data import segment_ids  # here: the rest of this module needs no data code

        input_ids = blocks[order.indices(step)[rank * per_rank:][:per_rank]].long()
        return {"input_ids": input_ids, "attention_mask": (input_ids != pad_id).long(), "rng": rng,
                "token_type_ids": segment_ids(input_ids, backend.tokens.sep_id)}  # blocks hold two segments

    step_model = model
    if _compile_wanted(compile, accelerator.device.type):
        step_model = _compiled(model, batch_at(state.step), rng, accelerator, strict=compile in (True, "true"))
    pending = sorted(((f, s) for f, s in plan.checkpoint_steps.items() if f not in state.points),
                     key=lambda kv: (kv[1], kv[0]))
    checkpoints = {f: checkpoint_dir(out_dir, f) for f in state.points}
    bar = tqdm(total=int(total), initial=min(int(state.wall_s if timed else state.step), int(total)), desc=label,
               unit="s" if timed else "step", dynamic_ncols=True,
               disable=not progress or not accelerator.is_main_process)
    reset_peak_memory()  # this run's peak, not the process's (earlier runs in it were larger or smaller)
    lr = 0.0
    start = time.perf_counter()
    last_save, last_save_step, save_cost = start, state.step, 0.0

    def elapsed() -> float:
        return state.wall_s + time.perf_counter() - start

    def write_state() -> None:
        """Called by every process at the same step: rank 0 writes, with every rank's RNG state."""
        nonlocal last_save, last_save_step, save_cost
        began = time.perf_counter()
        if resume is not None:
            rngs = _gather_rng(accelerator, rng)
            if accelerator.is_main_process:
                snapshot = dataclasses.replace(state, wall_s=elapsed(), rng=rngs)
                save_state(out_dir, model=accelerator.unwrap_model(model), optimizer=optimizer, loop=snapshot,
                           plan_key=key)
                state.saves = snapshot.saves
        last_save, last_save_step = time.perf_counter(), state.step
        save_cost = last_save - began

    def saved_step() -> int | None:
        """The step of the resume state on disk, if any."""
        return last_save_step if resume is not None and (state.saves or resumed_from) else None

    def state_due() -> bool:
        since = time.perf_counter() - last_save
        if since * MAX_SAVE_SHARE < save_cost:  # never spend more than 2% of the run writing states
            return False
        return bool((resume.every_steps and state.step - last_save_step >= resume.every_steps)
                    or (resume.every_minutes and since >= 60 * resume.every_minutes))

    done = elapsed() >= plan.time_budget_s if timed else state.step >= plan.steps
    window = _Window(accelerator.device, state.window, state.step)  # this logging window's metrics, on the device
    with _Signals() as signals:
        while not done:
            factor = schedule(elapsed() if timed else state.step + 0.5)  # mid-step: no step wasted at lr 0
            for g, base in zip(optimizer.param_groups, base_lrs):
                g["lr"] = lr = base * factor
            batch = batch_at(state.step)
            with accelerator.autocast():
                out = step_model(batch)
            accelerator.backward(out.loss)
            norm = accelerator.clip_grad_norm_(model.parameters(), opt.max_grad_norm or math.inf)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            # No host-device sync in a step: metrics, tokens and non-finite checks stay on the device
            # and are read once at the next boundary (a logging step, a checkpoint, a save or a stop).
            window.add(out, norm, batch["attention_mask"])
            now = elapsed()
            logged = state.step % log_every == 0 or state.step == 1  # step 1: the loss at initialisation
            due = not timed and (state.step >= plan.steps or bool(pending and state.step >= pending[0][1]))
            signalled = signals.received is not None  # any process signalled: all save and stop after this step
            save_due = accelerator.is_main_process and resume is not None and state_due()
            time_up = timed and now >= plan.time_budget_s  # a time budget: all stop at the same step
            local = signalled or save_due or time_up or bool(timed and pending and now >= pending[0][0] * total)
            # One process may stop at any step; several agree at steps all of them know are boundaries.
            if not (logged or due or (world == 1 and local)):
                bar.update(0 if timed else 1)
                continue
            read = window.read(accelerator, signalled=signalled, save_due=save_due, time_up=time_up)
            if read.bad_step:  # found at the boundary; the optimiser already applied it, but nothing is saved
                raise Diverged(read.bad_step, read.bad_what, read.bad_value, state.final, lr, mixed, saved_step())
            state.tokens += read.tokens
            done = read.time_up if timed else state.step >= plan.steps
            if logged or done:
                state.final = _mean_over_ranks(accelerator, window.pop_means())
                state.final["lr"] = lr
                for k, v in state.final.items():
                    state.series.append(Metric(k, v, step=state.step, flops=plan.flops_at(state.step), wall_s=now))
                if tracking is not None:  # the same points as the store's series: a view of them
                    tracking.log_pretraining(state.final, state.step, plan.flops_at(state.step))
                bar.set_postfix({k: f"{state.final[k]:.3f}" for k in list(state.final)[:3]}, refresh=False)
            bar.update(int(now) - bar.n if timed else 1)
            # Save every checkpoint whose share of the budget (FLOPs or time) is now spent.
            while pending and (done or (now >= pending[0][0] * total if timed else state.step >= pending[0][1])):
                frac, _ = pending.pop(0)
                state.points[frac] = (state.step, plan.flops_at(state.step))
                if accelerator.is_main_process:
                    record = pretraining_record(state.series, state.step, plan)  # read by fine-tuning's warning
                    checkpoints[frac] = atomic_save(accelerator.unwrap_model(model), checkpoint_dir(out_dir, frac),
                                                    save, record=record)
            if read.signalled:
                state.window = window.rows()
                write_state()
                raise Interrupted(signals.received or signal.SIGTERM, f"stopped after step {state.step}" + (
                    "; its resume state is saved" if resume is not None else ""))
            if read.save_due and not done:
                state.window = window.rows()
                write_state()
    wall = elapsed()
    bar.close()
    achieved = plan.flops_at(state.step, "executed") / wall if wall > 0 else 0.0
    return PretrainResult(
        steps=state.step,
        wall_s=wall,
        tokens=state.tokens,
        tokens_per_s=state.tokens / wall if wall > 0 else 0.0,
        flops={c: plan.flops_at(state.step, c) for c in CONVENTIONS},
        final=state.final,
        series=state.series,
        checkpoints=checkpoints,
        checkpoint_points=state.points,
        peak_memory_mb=peak_memory_mb(),
        mfu=_mfu(achieved, mixed, world),
        resumed_from_step=resumed_from,
        resume_saves=state.saves,
        compiled=step_model is not model,
        precision="bf16" if mixed == "bf16" else "fp32",
    )


@dataclass
class _Read:
    """What one boundary read from the device (and agreed over the processes)."""

    tokens: int
    signalled: bool  # on any process
    save_due: bool  # on rank 0
    time_up: bool  # on any process
    bad_step: int = 0  # the first step with a non-finite loss or gradient norm; 0: none
    bad_what: str = ""
    bad_value: float = math.nan


class _Window:
    """A logging window's metrics, tokens and non-finite checks, accumulated on the device.

    `add` launches a few small kernels and never waits for the device; `read` is the one
    host-device sync (and, with several processes, the one collective) per boundary.
    """

    def __init__(self, device: torch.device, saved: dict[str, list[float]], step: int) -> None:
        self.device = device
        self.keys: list[str] = list(saved)
        values = list(zip(*saved.values())) if saved else []
        self._rows = [torch.tensor(v, dtype=torch.float64, device=device) for v in values]
        self._tokens = torch.zeros((), dtype=torch.float64, device=device)
        self._bad = torch.zeros(3, dtype=torch.float64, device=device)  # (step, 1 loss | 2 norm, value)
        self._step = torch.full((), float(step), dtype=torch.float64, device=device)  # the loop's step, on the device

    def add(self, out: Any, norm: torch.Tensor, attention_mask: torch.Tensor) -> None:
        if not self.keys:
            self.keys = list(out.metrics)
        self._rows.append(torch.stack([torch.as_tensor(out.metrics[k], device=self.device).detach().double()
                                       for k in self.keys]))
        self._tokens += attention_mask.sum()
        self._step += 1
        loss, norm = out.loss.detach().double(), norm.detach().double()
        loss_bad, norm_bad = ~torch.isfinite(loss), ~torch.isfinite(norm)
        first = (self._bad[0] == 0) & (loss_bad | norm_bad)
        found = torch.stack([self._step, torch.where(loss_bad, 1.0, 2.0).double(), torch.where(loss_bad, loss, norm)])
        self._bad = torch.where(first, found, self._bad)

    def read(self, accelerator: Any, *, signalled: bool, save_due: bool, time_up: bool) -> _Read:
        """Tokens since the last read (all processes), the first non-finite step, and each flag
        as raised by any process.

        The gradient norm is that of the synchronised gradient, so a non-finite loss on any
        process makes the norm non-finite on all of them at the same step: every process finds
        the same first bad step and stops at the same boundary.
        """
        shared = torch.cat([self._tokens.view(1),
                            torch.tensor([signalled, save_due, time_up], dtype=torch.float64).to(self.device)])
        if accelerator.num_processes > 1:
            shared = accelerator.reduce(shared, reduction="sum")
        values = shared.tolist() + self._bad.tolist()
        self._tokens.zero_()
        bad_step, what, value = int(values[-3]), values[-2], values[-1]
        return _Read(tokens=int(values[0]), signalled=values[1] > 0, save_due=values[2] > 0, time_up=values[3] > 0,
                     bad_step=bad_step, bad_what="loss" if round(what) == 1 else "gradient norm", bad_value=value)

    def pop_means(self) -> dict[str, float]:
        """This window's mean of each metric, and a new window."""
        if not self._rows:
            return {}
        means = torch.stack(self._rows).mean(0).tolist()
        self._rows = []
        return dict(zip(self.keys, means))

    def rows(self) -> dict[str, list[float]]:
        """The unfinished window, for the resume state."""
        if not self._rows:
            return {}
        return dict(zip(self.keys, torch.stack(self._rows).T.tolist()))


def _mean_over_ranks(accelerator: Any, values: dict[str, float]) -> dict[str, float]:
    """Each metric averaged over the processes (each process's own mean over its rows): the
    1-process value whenever the processes hold equal numbers of masked tokens."""
    if accelerator.num_processes == 1 or not values:
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64, device=accelerator.device)
    return dict(zip(values, accelerator.reduce(t, reduction="mean").tolist()))


def _gather_rng(accelerator: Any, rng: RowRandom) -> dict[str, torch.Tensor]:
    """Every process's torch RNG states (CPU, and CUDA where present) and the shared row draws' counter."""
    from accelerate.utils import gather_object

    mine = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        mine["cuda"] = torch.cuda.get_rng_state()
    per_rank = gather_object([mine]) if accelerator.num_processes > 1 else [mine]
    out = {"row_draws": rng.state()}  # an integer: resumes on any device
    for r, states in enumerate(per_rank):
        out.update({f"{k}.rank{r}": v.cpu() for k, v in states.items()})
    return out


def _restore_rng(states: dict[str, torch.Tensor], rng: RowRandom, rank: int) -> None:
    """Put back what `_gather_rng` saved. The row draws continue on any device; the CPU stream too;
    a CUDA stream only where the saved state is one (a run begun on the CPU keeps its seeded one)."""
    if "row_draws" in states:
        rng.load_state(states["row_draws"])
    if f"torch.rank{rank}" in states:
        torch.set_rng_state(states[f"torch.rank{rank}"].cpu())
    if torch.cuda.is_available() and f"cuda.rank{rank}" in states:
        torch.cuda.set_rng_state(states[f"cuda.rank{rank}"].cpu())


class Diverged(RunFailure):
    """A non-finite loss or gradient: the run stops at the next boundary (the device is read only
    there), before any checkpoint or resume state holds the step."""

    def __init__(self, step: int, what: str, value: float, last: dict[str, float], lr: float, mixed: str,
                 saved_step: int | None = None) -> None:
        shown = ", ".join(f"{k} {v:.4g}" for k, v in last.items()) or "none logged in this attempt"
        cause = ("the learning rate is too high for this model" + (" or bf16 overflowed" if mixed == "bf16" else ""))
        fix = "lower pretrain.lr" + (' or set pretrain.precision = "fp32"' if mixed == "bf16" else "")
        super().__init__(f"pretraining diverged at step {step}: the {what} became {value} (lr {lr:.3g}; "
                         f"last logged: {shown}). Likely cause: {cause}; {fix} and re-run. "
                         + ("No resume state had been written yet." if saved_step is None else
                            f"The resume state from step {saved_step}, before it, is kept."))
        self.step = step


PRETRAINING_RECORD = "pretraining.json"  # beside each saved checkpoint: its pretraining's steps and loss
RECORD_POINTS = 32  # the loss series in the record is downsampled to at most this many logged points


def pretraining_record(series: list[Metric], step: int, plan: PretrainPlan) -> dict[str, Any]:
    """A checkpoint's pretraining in brief (JSON-ready): steps done and planned, and the logged
    `loss` series (first, min and last values, a downsampled series, whether any was non-finite).

    Fine-tuning reads it to tell an under-trained encoder (loss still falling) from a diverged one.
    """
    points = [(m.step, m.value) for m in series if m.name == "loss" and m.step is not None]
    finite = [(s, float(v)) for s, v in points if math.isfinite(v)]
    record: dict[str, Any] = {"format": 1, "steps": step, "planned_steps": plan.steps or None,
                              "time_budget_s": plan.time_budget_s, "loss_points": len(points),
                              "nonfinite": len(finite) < len(points)}
    if finite:
        low = min(finite, key=lambda p: p[1])
        record["loss"] = {"first": finite[0][1], "first_step": finite[0][0], "min": low[1], "min_step": low[0],
                          "last": finite[-1][1], "last_step": finite[-1][0]}
        keep = sorted({round(i * (len(finite) - 1) / (RECORD_POINTS - 1)) for i in range(RECORD_POINTS)})
        record["loss_series"] = [list(finite[i]) for i in keep]  # [step, loss], first and last included
    return record


def atomic_save(model: Backend, target: Path, save: Callable[[torch.nn.Module, Path], None], *,
                record: dict[str, Any] | None = None) -> Path:
    """Write into a temporary folder unique to this writer and rename: no half checkpoint is ever
    left behind, and two writers never share a temporary folder. `record` (pretraining_record)
    goes into the same folder as PRETRAINING_RECORD; without one (no pretraining) none is written."""
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        save(model.encoder(), tmp)
        if record is not None:
            import json  # only here: the one JSON file this module writes

            (tmp / PRETRAINING_RECORD).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _compile_wanted(setting: bool | str, device_type: str) -> bool:
    """true: always; auto: where a GPU runs the step (on the CPU compiling costs more than it saves)."""
    return setting in (True, "true") or (setting == "auto" and device_type == "cuda")


def _compiled(model: torch.nn.Module, batch: dict[str, Any], rng: RowRandom, accelerator: Any, *,
              strict: bool) -> torch.nn.Module:
    """`torch.compile(model)`, compiled now on one forward and backward of the first batch, with
    every random state and gradient put back as it was, so the run itself is untouched by the
    trial. Where compilation fails: eager with a one-line warning, or (strict) an error."""
    states = (rng.state(), torch.get_rng_state(),
              torch.cuda.get_rng_state() if torch.cuda.is_available() else None)
    compiled_model = torch.compile(model)
    try:
        with accelerator.autocast():
            out = compiled_model(batch)
        accelerator.backward(out.loss)
    except Exception as exc:  # noqa: BLE001 - any compiler failure: the eager step is the same computation
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        if strict:
            raise ConfigError(f"pretrain.compile = true, but torch.compile failed: {type(exc).__name__}: {first}. "
                              f"Set pretrain.compile = \"auto\" (falls back) or false.") from exc
        warnings.warn(f"torch.compile failed ({type(exc).__name__}: {first}); pretraining runs uncompiled",
                      stacklevel=2)
        compiled_model = model
    finally:
        model.zero_grad(set_to_none=True)
        rng.load_state(states[0])
        torch.set_rng_state(states[1])
        if states[2] is not None:
            torch.cuda.set_rng_state(states[2])
    return compiled_model


def mixed_precision(precision: str) -> str:
    """accelerate's mixed_precision for a `pretrain.precision` setting: "bf16" or "no".
    "auto" resolves as bench.train.hardware.resolve_precision says (a GPU with bf16; a CPU with
    native bf16 only where hardware.CPU_BF16, a measured decision, allows it)."""
    from bench.train.hardware import resolve_precision

    return "bf16" if resolve_precision(precision) == "bf16" else "no"


def _mfu(achieved_flops_per_s: float, mixed: str, world_size: int = 1) -> float | None:
    """MFU per device: the global batch's FLOP/s (`achieved_flops_per_s`) over world_size x one device's peak
    (BENCH_PEAK_FLOPS where set: a device the peak table lacks, a CPU)."""
    from bench.train.hardware import mfu, peak_flops, peak_override

    peak = peak_override()
    if peak is None:
        if not torch.cuda.is_available():
            return None
        tf32 = torch.backends.cuda.matmul.allow_tf32
        peak = peak_flops(torch.cuda.get_device_name(0), "bf16" if mixed == "bf16" else ("tf32" if tf32 else "fp32"))
    return mfu(achieved_flops_per_s, peak, world_size)
