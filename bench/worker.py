"""One run, start to result: pretrain or fine-tune, and return the metrics to record.

The same code runs in `bench run` itself (inline), in every rank of a launcher's process
group, and in a job on a cluster node (bench.executors). It never opens the results store:
it reads the prepared data and checkpoints, writes its own run folder (rank 0 only), and
returns a `RunResult`, which the one process that owns the store records.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.distributed import Ranks
from bench.plan import FinetuneRun, Plan, PretrainRun
from bench.preflight import build_backend
from bench.registry import TASKS
from bench.environment import environment, plugins_of
from bench.results.store import Metric
from bench.results.learning import reason as learning_reason
from bench.tracking import RunTracker, TrackerSettings, finetune_run_name, flat_params, pretrain_run_name


@dataclass
class RunResult:
    """What a run hands back: its metrics (final values and series) and its warnings."""

    metrics: list[Metric]
    warnings: list[str] = field(default_factory=list)
    resumed: bool = False  # continued from a resume state
    environment: dict[str, Any] | None = None  # where it ran (a job's node, not its driver's)

    def to_json(self) -> dict[str, Any]:
        return {"metrics": [dataclasses.astuple(m) for m in self.metrics], "warnings": self.warnings,
                "resumed": self.resumed, "environment": self.environment}

    @staticmethod
    def from_json(d: dict[str, Any]) -> RunResult:
        """A RunResult from its JSON form, checked field by field (a ValueError says what is wrong)."""
        if not isinstance(d, dict) or not isinstance(d.get("metrics"), list):
            raise ValueError("no list of metrics")
        metrics = []
        for m in d["metrics"]:
            if not (isinstance(m, list) and len(m) == 5 and isinstance(m[0], str) and _number(m[1], none=True)
                    and _number(m[2], none=True)
                    and _number(m[3], none=True) and _number(m[4], none=True)):
                raise ValueError(f"a metric is not [name, value, step, flops, wall_s]: {str(m)[:80]}")
            metrics.append(Metric(*m))
        warnings, resumed, env = d.get("warnings", []), d.get("resumed", False), d.get("environment")
        if not (isinstance(warnings, list) and all(isinstance(w, str) for w in warnings)):
            raise ValueError("warnings are not a list of strings")
        if not isinstance(resumed, bool):
            raise ValueError("resumed is not true/false")
        if env is not None and not isinstance(env, dict):
            raise ValueError("environment is not an object")
        return RunResult(metrics, list(warnings), resumed, env)


# --- a job's result: JSON beside the run's checkpoint folder, never a pickle -------------------------

JOB_RESULT_FORMAT = 1
MAX_JOB_RESULT_BYTES = 1 << 30  # a pretraining run's series included; more is not a result
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")


class JobResultError(ValueError):
    """A job's result file is missing, unreadable or not what a job writes."""


def job_result_path(run_dir: Path, job_id: str) -> Path:
    """Where job `job_id` of a run writes its result: `<results>/runs/<run id>/job-<job id>.result.json`."""
    if not _JOB_ID.fullmatch(str(job_id)):
        raise JobResultError(f"not a job id: {job_id!r}")
    return Path(run_dir) / f"job-{job_id}.result.json"


def write_job_result(path: Path, *, run_id: str, job_id: str, result: RunResult | None = None,
                     error: str | None = None) -> None:
    """Write a job's result (or the error it ended with) as JSON, atomically: a temporary file in the same
    folder, flushed, then renamed over `path`, so the driver sees the whole file or none."""
    payload: dict[str, Any] = {"format": JOB_RESULT_FORMAT, "run_id": run_id, "job_id": str(job_id)}
    if result is not None:
        payload["result"] = result.to_json()
    else:
        payload["error"] = error or "the job failed without saying why"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(payload, f, default=_plain)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_job_result(path: Path, *, run_id: str, job_id: str) -> RunResult | str:
    """The RunResult a job wrote to `path`, or the error text it ended with. Only JSON is read (no pickle),
    from a regular file of this user's (not a link), and checked: a JobResultError says what is wrong."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise JobResultError(f"no result file {path}") from None
    except OSError as exc:
        raise JobResultError(f"cannot open the result file {path} ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        import stat

        if not stat.S_ISREG(st.st_mode):
            raise JobResultError(f"the result file {path} is not a regular file")
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            raise JobResultError(f"the result file {path} belongs to another user (uid {st.st_uid})")
        if st.st_size > MAX_JOB_RESULT_BYTES:
            raise JobResultError(f"the result file {path} is {st.st_size} bytes, more than a result can be")
        raw = f.read(MAX_JOB_RESULT_BYTES + 1)
    try:
        d = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise JobResultError(f"the result file {path} is not JSON ({exc})") from None
    if not isinstance(d, dict) or d.get("format") != JOB_RESULT_FORMAT:
        raise JobResultError(f"the result file {path} is not a job result (format {JOB_RESULT_FORMAT})")
    if d.get("run_id") != run_id or str(d.get("job_id")) != str(job_id):
        raise JobResultError(f"the result file {path} is for run {d.get('run_id')!r} job {d.get('job_id')!r}, "
                             f"not run {run_id} job {job_id}")
    if "error" in d:
        if not isinstance(d["error"], str):
            raise JobResultError(f"the result file {path} holds an error that is not text")
        return d["error"]
    try:
        return RunResult.from_json(d.get("result"))
    except ValueError as exc:
        raise JobResultError(f"the result file {path} is not a valid result: {exc}") from None


def _number(x: Any, *, none: bool = False) -> bool:
    return (x is None and none) or (isinstance(x, (int, float)) and not isinstance(x, bool))


def _plain(x: Any) -> Any:
    """JSON for the numbers a metric may hold (numpy scalars, tensors' items)."""
    if hasattr(x, "item"):
        return x.item()
    raise TypeError(f"not JSON: {type(x).__name__}")


class Worker:
    """Executes runs of a prepared plan. `data` is the PretrainData preflight prepared."""

    def __init__(self, plan: Plan, data: Any, *, data_wall_s: float = 0.0, ranks: Ranks = Ranks(0, 1),
                 progress: bool = True) -> None:
        self.plan, self.exp, self.data, self.data_wall_s = plan, plan.experiment, data, data_wall_s
        self.ranks, self.progress = ranks, progress and ranks.is_main
        self.results = self.exp.results_dir
        self.by_id = {pt.id: pt for pt in plan.pretrain_runs}

    def run_dir(self, run_id: str) -> Path:
        return self.results / "runs" / run_id

    def checkpoint(self, pt: PretrainRun, fraction: float) -> str:
        """Where a fine-tuning run loads its encoder from."""
        if pt.external:
            return pt.external.partition(":")[2]
        from bench.train.pretrain import checkpoint_dir

        return str(checkpoint_dir(self.run_dir(pt.id), fraction))

    def checkpoints_exist(self, pt: PretrainRun) -> bool:
        return bool(pt.external) or all(Path(self.checkpoint(pt, f)).is_dir() for f in pt.checkpoint_fractions)

    def tracker(self, run: PretrainRun | FinetuneRun) -> RunTracker | None:
        """The run's experiment trackers (run.trackers / --tracker), named for it, its spec as
        hyper-parameters; None without trackers. They come with the plan, so a job's run logs too."""
        settings = TrackerSettings.of(self.exp.trackers, self.results)
        if settings is None:
            return None
        if isinstance(run, PretrainRun):
            name = pretrain_run_name(run.model, run.size, run.seed)
        else:
            name = finetune_run_name(run.model, run.task, run.size, run.seed, run.fraction)
        params = {"run_id": run.id, "kind": "pretrain" if isinstance(run, PretrainRun) else "finetune",
                  **flat_params(run.spec())}
        return RunTracker(settings, name, run.id, params)

    def execute(self, run: PretrainRun | FinetuneRun) -> RunResult:
        """The run's result, stamped with the environment it ran in (its processes included)."""
        result = self.pretrain(run) if isinstance(run, PretrainRun) else self.finetune(run, self.by_id[run.pretrain_id])
        result.environment = environment(processes=self.ranks.world, plugins=plugins_of(self.plan))
        return result

    def pretrain(self, pt: PretrainRun) -> RunResult:
        import torch

        from bench.backend import CONVENTIONS
        from bench.train.pretrain import (OptimSettings, ResumeSettings, atomic_save, checkpoint_dir,
                                          plan_pretraining, pretrain)
        from bench.data.pretrain_data import load_blocks
        from bench.data.tokenizer import load_tokenizer

        if pt.external:
            return RunResult([Metric("steps", 0)] + [Metric(f"flops_{c}", 0.0) for c in CONVENTIONS])
        data = self.data  # prepared by preflight, before any run was claimed
        data_wall = self.data_wall_s  # what preparing it (or finding it in the cache) took
        tokenizer = load_tokenizer(data.tokenizer_dir)
        torch.manual_seed(pt.seed)
        backend = build_backend(pt, self.plan, data.tokens)  # a bad option or the backend's own error
        flops_budget = None if pt.budget.is_time else pt.budget.value
        out_dir = self.run_dir(pt.id)

        def save(encoder: torch.nn.Module, target: Path) -> None:
            encoder.save_pretrained(target, safe_serialization=True)
            tokenizer.save_pretrained(target)

        if not pt.pretrains:
            for f in pt.checkpoint_fractions if self.ranks.is_main else ():
                atomic_save(backend, checkpoint_dir(out_dir, f), save)
            return RunResult([Metric("steps", 0), Metric("wall_s", 0.0), Metric("data_wall_s", data_wall),
                              Metric("params", _count(backend)), Metric("encoder_params", _count(backend.encoder()))]
                             + [Metric(f"flops_{c}", 0.0) for c in CONVENTIONS])
        plan = plan_pretraining(backend, budget_flops=flops_budget or 0.0, convention=pt.convention,
                                batch_size=pt.batch_size, seq_len=pt.seq_len, warmup_fraction=pt.warmup_fraction,
                                checkpoint_fractions=pt.checkpoint_fractions,
                                time_budget_s=pt.budget.value if pt.budget.is_time else None)
        opt = OptimSettings(lr=pt.lr, weight_decay=pt.weight_decay, adam_eps=pt.adam_eps,
                            max_grad_norm=pt.max_grad_norm)
        blocks = load_blocks(data)
        every = ResumeSettings(self.exp.pretrain.resume_every_steps, self.exp.pretrain.resume_every_minutes)
        tracking = self.tracker(pt)
        try:
            result = pretrain(backend, blocks, plan, opt, pad_id=data.tokens.pad_id, out_dir=out_dir, save=save,
                              seed=pt.seed, log_every=self.exp.pretrain.log_every, precision=pt.precision,
                              progress=self.progress, label=f"pretrain {pt.model}", resume=every,
                              compile=self.exp.pretrain.compile, tracking=tracking)
        finally:
            if tracking is not None:
                tracking.finish()
        metrics = result.metrics() + [
            Metric("data_wall_s", data_wall),
            Metric("planned_steps", plan.steps),
            Metric("budget_s" if pt.budget.is_time else "budget_flops", pt.budget.value),
            Metric("params", _count(backend)),
            Metric("encoder_params", _count(backend.encoder())),
        ] + [Metric(f"flops_per_step_{c}", v) for c, v in plan.flops_per_step.items()]
        return RunResult(metrics, warnings=_tracker_problems(pt.model, tracking),
                         resumed=bool(result.resumed_from_step))

    def finetune(self, ft: FinetuneRun, parent: PretrainRun) -> RunResult:
        from bench.train.finetune import FinetuneConfig, finetune

        task = TASKS.get(ft.task)
        cfg = FinetuneConfig(**{k: v for k, v in ft.settings.items() if k in _finetune_config_fields()})
        tracking = self.tracker(ft)
        try:
            result = finetune(self.checkpoint(parent, ft.fraction), task, cfg, seed=ft.seed,
                              data_dir=self.exp.data_dir, progress=self.progress,
                              label=f"fine-tune {ft.model} {ft.task} seed {ft.seed}"
                              + (f" @{ft.fraction:g}" if ft.fraction < 1 else ""), tracking=tracking)
        finally:
            if tracking is not None:
                tracking.finish()
        metrics = [Metric("score", result.metrics[result.headline]), Metric("train_wall_s", result.train_wall_s),
                   Metric("eval_wall_s", result.eval_wall_s), Metric("steps", result.steps),
                   Metric("train_examples", result.train_examples), Metric("cls_cosine", result.cls_cosine),
                   Metric("fraction", ft.fraction)]
        metrics += [Metric(f"metric_{k}", v) for k, v in result.metrics.items()]
        metrics += [Metric(k, v) for k, v in result.learning.items()]
        warnings = [f"{ft.model} ({ft.task}, seed {ft.seed}): {w}" for w in result.warnings]
        if why := learning_reason(result.learning):
            warnings.append(f"{ft.model} ({ft.task}, seed {ft.seed}): did not learn the task: {why}; its score is "
                            f"kept in the store and left out of every claim")
        warnings += _tracker_problems(f"{ft.model} ({ft.task}, seed {ft.seed})", tracking)
        return RunResult(metrics, warnings)


def _tracker_problems(who: str, tracking: RunTracker | None) -> list[str]:
    """A failed tracker's one warning, for the run's result (the run itself is kept)."""
    return [f"{who}: {p}" for p in tracking.problems] if tracking is not None else []


def clear_resume_state(run_dir: Path) -> None:
    """A pretraining run is done: its resume state has served its purpose."""
    from bench.train.resume import resume_dir

    shutil.rmtree(resume_dir(run_dir), ignore_errors=True)


def _count(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())  # parameters() counts a tied tensor once


def _finetune_config_fields() -> set[str]:
    from bench.train.finetune import FinetuneConfig

    return {f.name for f in dataclasses.fields(FinetuneConfig)}
