"""How many runs does an experiment need? The power of its claims, before any run (`bench plan --power`).

For the experiment as configured (models, control, tasks, pretraining runs P per model, fine-tuning seeds
S per run), each claim is a Welch t test over P vs P per-run medians (bench.results.inference), corrected
with Holm over the report's comparisons. Its power needs two standard deviations, between pretraining
runs and between fine-tuning seeds of one run: taken from the results store's replicated runs of the
same task and size when it has them, else the documented defaults (inference.DEFAULT_VARIANCE).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.plan import Plan
from bench.results.inference import (DEFAULT_VARIANCE, LEVEL, POWER, Variance, min_detectable_gap, runs_needed,
                                     unit_sd, variance_components)


@dataclass(frozen=True)
class Design:
    """What a plan replicates and how many comparisons its report makes."""

    pretrain_runs: int
    seeds: int
    comparisons: int  # per report: every pair of models and every model against the control, over the tasks
    tasks: tuple[str, ...]
    size: str


def design_of(plan: Plan) -> Design:
    trained = [r.model for r in plan.pretrain_runs if r.pretrains and r.seed == plan.pretrain_runs[0].seed]
    control = 1 if any(not r.pretrains for r in plan.pretrain_runs) else 0
    models = len(trained)
    per_task = models * (models - 1) // 2 + models * control
    seeds = max((f.seed for f in plan.finetune_runs), default=-1) + 1
    return Design(plan.experiment.pretrain_seeds, seeds, max(1, per_task * len(plan.task_names)),
                  plan.task_names, plan.size.name)


def measured_variance(results: Path, tasks: tuple[str, ...], size: str) -> Variance | None:
    """Variance components from the store's configurations with >= 2 pretraining runs on these tasks and size."""
    from bench.results.store import DB_NAME, Store
    from bench.results.tables import RUN_SCORES, comparison_rows, filter_finetune, finetune_rows, full_budget

    db = results / DB_NAME
    if not db.is_file():
        return None
    with Store(db) as store:
        rows = comparison_rows(filter_finetune(finetune_rows(store), tasks=tasks, sizes=[size]))
    runs = rows.attrs.get(RUN_SCORES, {})
    from bench.results.tables import _key

    groups = [runs.get(_key(r), []) for r in full_budget(rows).records]
    v = variance_components(groups)
    if v is None:
        return None
    return Variance(v.sd_pretrain, v.sd_finetune, f"measured in {db}: {v.groups} configuration(s) with replicated "
                    f"pretraining runs on {', '.join(tasks)} ({size})", v.groups)


def power_lines(plan: Plan, *, gap: float | None = None, variance: Variance | None = None) -> list[str]:
    """What the experiment as configured can detect, and the runs a named gap needs."""
    d = design_of(plan)
    v = variance or measured_variance(plan.experiment.results_dir, d.tasks, d.size) or DEFAULT_VARIANCE
    alpha = (1 - LEVEL) / d.comparisons
    sd = unit_sd(v.sd_pretrain, v.sd_finetune, d.seeds)
    lines = [f"design: {d.pretrain_runs} pretraining run(s) per model x {d.seeds} fine-tuning seed(s) per run; "
             f"{d.comparisons} comparison(s) in the report, Holm-corrected (the first step tests at "
             f"{alpha:.3g}); claims at the {LEVEL:.0%} level.",
             f"noise: sd between pretraining runs {v.sd_pretrain:.4f}, between fine-tuning seeds {v.sd_finetune:.4f} "
             f"({v.source}); one run's median over {d.seeds} seed(s) has sd {sd:.4f}."]
    if d.pretrain_runs < 2:
        lines.append("with one pretraining run per model the report compares checkpoints and can claim nothing about "
                     "the objectives: give --pretrain-seeds 2 or more.")
    else:
        mde = min_detectable_gap(sd, d.pretrain_runs, d.pretrain_runs, alpha=alpha, power=POWER)
        lines.append(f"smallest gap detected with {POWER:.0%} power: {mde:.4f} ({mde * 100:.2f} points).")
    table = []
    for p in (2, 3, 5, 10, 20):
        mde = min_detectable_gap(sd, p, p, alpha=alpha, power=POWER)
        table.append(f"{p} runs: {mde:.4f}")
    lines.append(f"smallest detectable gap by pretraining runs per model (same seeds and family): {'; '.join(table)}.")
    if gap is not None:
        n = runs_needed(gap, v.sd_pretrain, v.sd_finetune, d.seeds, alpha=alpha, power=POWER)
        lines.append(f"a true gap of {gap:.4g} needs {n} pretraining runs per model (x {d.seeds} seeds each) to be "
                     f"found with {POWER:.0%} power." if n is not None else
                     f"a true gap of {gap:.4g} needs more than 1000 pretraining runs per model at this noise.")
    return lines
