"""Check the whole plan before any work, and pin the data it runs on into its run ids.

Everything that can fail for a reason of the user's is tried here, before the first step:
the results folder and store, every task's files and label sets, every `hf:`/`path:`
checkpoint, the pretraining data, every backend's options, and that each budget buys at
least one step. What is found becomes part of the runs' identity (DESIGN.md, "Runs at
scale"): a pretraining run's id covers the prepared data and the vocabulary it actually
used, a fine-tuning run's the content of its task's files, an external checkpoint's its
config and weights. Changed data therefore makes new runs, and a report never mixes them.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import time
import uuid
from pathlib import Path
from typing import Any

from bench.errors import BenchError, ConfigError, DataError, StoreError, one_line
from bench.plan import Plan, PretrainRun
from bench.registry import MODELS, TASKS


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A checked plan whose run ids cover their data, and the pretraining data it prepared."""

    plan: Plan
    data: Any  # bench.data.pretrain_data.PretrainData, or None when no run pretrains from the corpus
    data_wall_s: float = 0.0  # preparing the data (or finding it in the cache)


def preflight(plan: Plan, *, progress: bool = True) -> Prepared:
    """Check `plan` (the results folder must already be writable: `check_results_folder`) and
    return it with every run's data identity filled in, plus the prepared pretraining data."""
    exp = plan.experiment
    cache = exp.results_dir / "cache"
    from bench.train.finetune import encoder_config
    from bench.train.hardware import peak_override

    peak_override()  # a malformed BENCH_PEAK_FLOPS fails now, not when the first pretraining run ends
    from bench.fingerprint import checkpoint_fingerprint

    task_ids = {}
    for name in plan.task_names:  # every split loads, labels fit: a typo fails now, not after pretraining
        task = TASKS.get(name)
        for split in ("train", *task.spec.eval_splits):
            if len(task.load(split, exp.data_dir)) == 0:
                raise DataError(f"task {name!r}: its {split} split is empty")
        task_ids[name] = task.fingerprint(exp.data_dir, cache)

    data, started = None, time.perf_counter()
    if any(not pt.external for pt in plan.pretrain_runs):
        from bench.data.pretrain_data import DataSpec, prepare_pretraining_data

        spec = DataSpec(**next(pt.data for pt in plan.pretrain_runs if not pt.external))
        data = prepare_pretraining_data(spec, exp.data_dir, progress=progress)  # the machine's cache ($BENCH_CACHE_DIR)
    data_wall_s = time.perf_counter() - started

    resolved: dict[str, PretrainRun] = {}
    for pt in plan.pretrain_runs:
        if pt.external:
            encoder_config(pt.external.partition(":")[2])  # loads, or a clear error naming the folder or hub id
            identity = {"checkpoint": checkpoint_fingerprint(pt.external, cache)}
        else:
            check_backend(pt, plan, data)
            identity = {"data": data.key, "vocab_sha256": data.vocab_sha256}
        resolved[pt.id] = dataclasses.replace(pt, identity=identity)
    finetune_runs = tuple(dataclasses.replace(ft, pretrain_id=resolved[ft.pretrain_id].id, task_data=task_ids[ft.task])
                          for ft in plan.finetune_runs)
    return Prepared(dataclasses.replace(plan, pretrain_runs=tuple(resolved.values()), finetune_runs=finetune_runs),
                    data, data_wall_s)


def check_results_folder(results: Path) -> None:
    """The results folder exists (or can be made) and takes a file: a clear error otherwise."""
    if results.exists() and not results.is_dir():
        raise ConfigError(f"--results {results} is a file, not a folder: point --results (or run.results in "
                          f"bench.toml) at a folder.")
    probe = results / f".write-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        results.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        full = " (the disk is full)" if exc.errno == errno.ENOSPC else ""
        raise StoreError(f"cannot write to the results folder {results}: {exc.strerror}{full}. Point --results at a "
                         f"folder you can write to.") from None


class BackendBuildError(BenchError):
    """A backend's constructor raised: the backend's own error (its traceback is the `__cause__`)."""


def build_backend(pt: PretrainRun, plan: Plan, tokens: Any) -> Any:
    """The run's backend. A TypeError or ValueError from its constructor is a bad option when
    [models.NAME] gave options (a ConfigError naming that table); any other failure, and any
    failure without options, is the backend's own (BackendBuildError, naming where it comes from)."""
    cls = MODELS.get(pt.model)
    try:
        return cls(plan.size, tokens, seq_len=pt.seq_len, **pt.options)
    except (TypeError, ValueError) as exc:
        if pt.options:
            where = plan.experiment.config_file or "bench.toml"
            raise ConfigError(f"{where}: bad option in [models.{pt.model}]: {exc}") from exc
        raise _build_error(pt.model, exc) from exc
    except Exception as exc:  # noqa: BLE001 - the backend's own failure, reported as such
        raise _build_error(pt.model, exc) from exc


def _build_error(model: str, exc: Exception) -> BackendBuildError:
    return BackendBuildError(f"backend {model!r} ({MODELS.source(model)}) failed to build: {one_line(exc)}; run with "
                             f"--debug for the traceback")


def check_backend(pt: PretrainRun, plan: Plan, data: Any) -> None:
    """Build the backend once (its options are checked) and make sure the budget buys a step."""
    import torch

    from bench.train.pretrain import plan_pretraining

    with torch.random.fork_rng(devices=[]):  # leave the global RNG as the run will find it
        backend = build_backend(pt, plan, data.tokens)
    if not pt.pretrains or pt.budget.is_time:
        return
    per_step = backend.flops_per_step(pt.batch_size, pt.seq_len, pt.convention).total
    if pt.budget.value < per_step:
        raise ConfigError(
            f"{plan.experiment.where('budget')}: the budget {pt.budget.text} ({pt.budget.value:.3g} FLOPs, "
            f"{pt.convention} convention) is less than one pretraining step of {pt.model} ({per_step:.3g} FLOPs for "
            f"a batch of {pt.batch_size} x {pt.seq_len} tokens). Give at least {per_step:.3g}.")
    plan_pretraining(backend, budget_flops=pt.budget.value, convention=pt.convention, batch_size=pt.batch_size,
                     seq_len=pt.seq_len, warmup_fraction=pt.warmup_fraction)
    del backend
