"""The Python API: `bench.run`, `bench.report` and `bench.load`, for notebooks and scripts.

`bench run` and `bench report` are thin layers over these functions: the same validation, the
same one-line errors (BenchError subclasses, raised to the caller here, printed by the CLI), the
same skip-if-done through the results store. This module imports only the standard library at
import time: torch and pandas are imported by the call that needs them, so that `import bench`
and `bench report` stay fast.

    import bench
    table = bench.run(["electra", "bert"], "sst2", size="tiny", seeds=3, results="results")
    view = bench.report("results")           # .table, .leaderboard, .claims, .to_html(path)
    loaded = bench.load("results")           # .runs (one row per run), .metrics (one per point)
    loaded.metrics.merge(loaded.runs, on="run_id")
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import BenchError, ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from bench.results.plots import PlotImage
    from bench.results.report import Report
    from bench.runner import RunSummary

Echo = Callable[[str], None]


# --- bench.run ------------------------------------------------------------------------------------


@dataclass
class RunResult:
    """Everything `bench run` prints after training, computed once for the CLI and for `run()`."""

    table: pd.DataFrame  # the comparison rows, then a row per planned configuration without a result
    verdicts: list[str]  # claim sentences: each pair at matched FLOPs, each model vs the control
    leaderboard: pd.DataFrame | None  # several tasks (e.g. --task glue): one row per model configuration
    tasks: tuple[str, ...]  # the plan's tasks (the leaderboard's per-task columns)
    suite_lines: list[str]  # with a suite: the paper's numbers beside the measured ones
    summary: RunSummary | None  # what the runner did (None on a follower rank)
    exit_code: int | None = None  # a follower rank under a launcher: its exit status; rank 0 speaks for all

    def summary_line(self) -> str:
        """`done in 12s: 3 pretrained, 6 fine-tuned, 0 already in the store.`"""
        s = self.summary
        assert s is not None
        extra = "".join(f", {n} {what}" for n, what in ((s.resumed, "resumed from a resume state"),
                                                         (s.retried, "retried after a failed or dead attempt"),
                                                         (s.submitted, "submitted as jobs"),
                                                         (s.adopted, "jobs of an earlier driver collected"))
                        if n)
        return (f"done in {s.wall_s:.0f}s: {s.pretrained} pretrained, {s.finetuned} fine-tuned, "
                f"{s.skipped} already in the store{extra}.")

    def failure_lines(self) -> list[str]:
        """The failed runs, for stderr (empty when none failed)."""
        s = self.summary
        if s is None or not s.failed:
            return []
        return [f"{len(s.failed)} run(s) failed (recorded in the store; re-run to retry):",
                *(f"  {f}" for f in s.failed)]


def run(models: Sequence[str] | str | None = None, task: str | None = None, *, size: str | None = None,
        budget: str | float | None = None, seeds: int | None = None, pretrain_seeds: int | None = None,
        results: str | os.PathLike[str] | None = None, config: str | os.PathLike[str] | None = None, suite: str | None = None, control: str | None = None,
        curve: bool | None = None, epochs: float | None = None, data: str | os.PathLike[str] | None = None,
        convention: str | None = None, quiet: bool | None = True, trackers: Sequence[str] | None = None,
        echo: Echo | None = None, **overrides: Any) -> pd.DataFrame:
    """Pretrain each model on one FLOP budget, fine-tune over seeds, store, and return the comparison.

    What `bench run` does, with the same validation, errors and skip-if-done: settings come from
    `config` (default ./bench.toml if present), then `suite`, then these arguments (None = not
    given: the file's value or the default). Runs already done in the results store are skipped,
    so calling it again only fills in what is missing (a failed run is retried).

    Args:
        models: models to compare (see `bench list`), a list or a comma string ("electra,bert").
        task: a registered task, or "glue" for every GLUE task present.
        size: size preset (tiny, small, base).
        budget: FLOPs (3e13), "electra-small@6.25%" or "20min".
        seeds: fine-tuning seeds per pretraining run.
        pretrain_seeds: independent pretraining runs per model (default 1), each fine-tuned over `seeds`.
        results: results folder (default ./results).
        config: experiment file (default ./bench.toml if present).
        suite: a named experiment (see `bench list`) layered over the config file.
        control: the no-pretraining control (default scratch; "none" drops it).
        curve: also fine-tune the checkpoints at 1/16..1/2 of the budget.
        epochs: override every task's fine-tuning epochs.
        data: data folder (default $BENCH_DATA_DIR).
        convention: paper or executed.
        quiet: no progress bars and no plan line (None: bench.toml's [run] quiet).
        trackers: tracker names ([run] trackers), e.g. ["tensorboard"].
        echo: where the runner's messages (warnings, failed runs) go; default stderr.
        **overrides: a bench.toml table's key as `<table>__<key>`, e.g. pretrain__precision="fp32",
            finetune__lr=3e-4, executor__kind="local", data__corpus="wikitext".

    Returns:
        The comparison table, one row per model, size, task and pretraining-FLOPs point (the rows
        `bench run` prints), columns:
        model, size, task: the configuration; budget_flops: the FLOP budget (0 for the control);
        pretrain_steps; pretrain_flops: FLOPs spent in the budget's convention, pretrain_flops_paper and
        pretrain_flops_executed: in each convention; pretrain_wall_s: pretraining seconds to this point;
        tokens_per_s: pretraining throughput; finetune_wall_s: median fine-tuning seconds per seed;
        score_median, score_min, score_max: the task's headline dev score over seeds; seeds: seeds done.
        A planned configuration without a result (a failed run) is a row with seeds = 0 and the reason
        where score_median would be (score_median is then of object dtype). Per-seed scores are in
        `table.attrs["seed_scores"]`.

    Raises:
        BenchError (ConfigError, UnknownNameError, DataError, StoreError): bad input, named in one line.
    """
    if epochs is not None and not (isinstance(epochs, (int, float)) and not isinstance(epochs, bool) and epochs > 0):
        raise ConfigError(f"epochs = {epochs!r} is out of range: give a positive number of epochs, e.g. 3.")
    flags: dict[str, Any] = {
        "models": models, "task": task, "size": size, "budget": budget, "budget_convention": convention,
        "seeds": seeds, "pretrain_seeds": pretrain_seeds, "control": control, "curve": curve, "results": _text(results), "data": _text(data),
        "quiet": quiet, **_checked_overrides(overrides),
    }
    if trackers is not None:  # passed only when given: [run] trackers in bench.toml otherwise
        flags["trackers"] = (trackers,) if isinstance(trackers, str) else tuple(trackers)
    say = echo or _stderr
    result = execute(flags, config=config, suite=suite, epochs=epochs, echo=say)
    for line in result.failure_lines():
        say(line)
    return result.table


def execute(flags: dict[str, Any], *, config: str | os.PathLike[str] | None = None, suite: str | None = None,
            epochs: float | None = None, echo: Echo = print) -> RunResult:
    """`bench run`'s work, shared by the CLI and `run()`: `flags` are load_experiment's overrides
    (run keys and `<table>__<key>`, None = not given)."""
    import pandas as pd

    from bench.distributed import init
    from bench.plan import plan_experiment
    from bench.results.claims import verdict_lines
    from bench.results.tables import comparison_from, failed_rows, filter_finetune, finetune_rows
    from bench.runner import Runner

    ranks = init()  # under torchrun / accelerate launch: join the process group first
    exp = _experiment(flags, config, suite)
    tasks = expand_tasks(exp.task, exp.data_dir)
    plan = plan_experiment(exp, curve=exp.curve, epochs=epochs, tasks=tasks)
    runner = Runner(plan, progress=not exp.quiet, echo=echo, ranks=ranks)
    try:
        plan = runner.prepare()  # everything checked, data prepared, before the first step
        if not ranks.is_main:  # train each run with rank 0, which prints and records
            return RunResult(pd.DataFrame(), [], None, plan.task_names, [], None, exit_code=runner.follow())
        if not exp.quiet:
            echo(f"plan: {len(plan.pretrain_runs)} pretraining and {len(plan.finetune_runs)} fine-tuning runs; "
                 f"size {plan.size.name}, budget {plan.budget.text} ({plan.budget.value:.3g} "
                 f"{'s' if plan.budget.is_time else 'FLOPs, ' + exp.budget_convention + ' convention'}), "
                 f"results in {exp.results_dir}")
        summary = runner.run()
        store = runner.store
        ft = filter_finetune(finetune_rows(store), run_ids=[f.id for f in plan.finetune_runs])
        df = comparison_from(ft)
        failed = failed_rows(store, [p.id for p in plan.pretrain_runs], [f.id for f in plan.finetune_runs],
                             plan.task_names)
        table = df if failed.empty else pd.concat([df, failed], ignore_index=True)
        board = None
        if len(plan.task_names) > 1:  # several tasks (e.g. --task glue): the leaderboard carries the average
            from bench.results.tables import leaderboard, pretrain_rows

            board = leaderboard(df, pretrain_rows(store))
        lines: list[str] = []
        if exp.suite:  # the paper's numbers beside the measured ones, and whether the ordering agrees
            from bench.results.paper import suite_lines
            from bench.suite import load_suite

            lines = suite_lines(ft.frame(), load_suite(exp.suite), exp.control, exp.budget_convention,
                                models=[*exp.models, *([exp.control] if exp.control else [])])
        return RunResult(table, verdict_lines(df, exp.control), board, plan.task_names, lines, summary)
    finally:
        if runner.store is not None:
            runner.store.close()


def _experiment(flags: dict[str, Any], config: str | os.PathLike[str] | None, suite: str | None) -> Any:
    """The validated Experiment of `bench run` / `bench plan` flags (`--control none` drops the control), with the
    tasks and models its bench.toml declares registered."""
    from bench.config import load_experiment
    from bench.entries import register_config_entries

    flags = dict(flags)
    if flags.get("control") is not None and str(flags["control"]).lower() in ("none", ""):
        flags["control"] = ""
    exp = load_experiment(config, flags, suite=suite)
    if exp.control == "":
        exp = dataclasses.replace(exp, control=None)
    register_config_entries(exp)
    return exp


def plan_lines(flags: dict[str, Any], *, config: str | os.PathLike[str] | None = None, suite: str | None = None,
               power: bool = False, gap: float | None = None) -> list[str]:
    """`bench plan`: the runs an experiment needs (nothing is trained), and with `power` what its claims can detect."""
    from bench.plan import plan_experiment

    exp = _experiment(flags, config, suite)
    plan = plan_experiment(exp, curve=exp.curve, tasks=expand_tasks(exp.task, exp.data_dir))
    lines = [f"plan: {len(plan.pretrain_runs)} pretraining and {len(plan.finetune_runs)} fine-tuning runs; models "
             f"{', '.join(dict.fromkeys(r.model for r in plan.pretrain_runs))}; tasks {', '.join(plan.task_names)}; "
             f"size {plan.size.name}, budget {plan.budget.value:.3g}{' s' if plan.budget.is_time else ' FLOPs'}"
             f"{'' if plan.budget.text in (f'{plan.budget.value:g}', f'{plan.budget.value:.3g}') else ' (' + plan.budget.text + ')'}"
             f"; results in {exp.results_dir}"]
    if power or gap is not None:
        from bench.power import power_lines

        lines += power_lines(plan, gap=gap)
    return lines


def expand_tasks(task: str, data_dir: Path | None) -> tuple[str, ...]:
    """`glue` -> every GLUE task whose data is present; any other task name as it is."""
    if task != "glue":
        return (task,)
    from bench.errors import DataError
    from tasks.glue import available_glue_tasks

    found = tuple(available_glue_tasks(data_dir))
    if not found:
        raise DataError(f"--task glue: no GLUE task data under {data_dir}/glue/ (set BENCH_DATA_DIR or --data).")
    return found


def _checked_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """`<table>__<key>` overrides of bench.toml's tables; anything else is a ConfigError with a did-you-mean."""
    from bench import config

    known = {f"{table}__{f.name}": f.name
             for table, attr in config._SECTIONS.items()  # the tables flags may set (--precision -> pretrain__precision)
             for f in dataclasses.fields(config._field_type(config.Experiment, attr))}
    for key in overrides:
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" Did you mean {close[0]}?" if close else ""
            raise ConfigError(f"bench.run(): unknown setting {key}=.{hint} Give a bench.toml table's key as "
                              f"<table>__<key>, e.g. pretrain__precision=\"fp32\" (tables: "
                              f"{', '.join(config._SECTIONS)}), or one of run()'s own arguments.")
    return overrides


def _text(value: str | os.PathLike[str] | None) -> str | None:
    return None if value is None else os.fspath(value)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- bench.report ---------------------------------------------------------------------------------


@dataclass
class ReportView:
    """A report read from a results store: its frames, and its renderings (md, html, csv, latex, json, parquet).

    table: the comparison (one row per model, size, task and pretraining-FLOPs point; columns as `run()`'s).
    leaderboard: one row per model configuration at the full budget, ranked: rank, model, size, budget_flops,
        params, pretrain_flops, pretrain_wall_s, tokens_per_s, one column per task (several tasks), the headline
        score (score, avg_score, or glue_avg for GLUE tasks), pretrain_runs, seeds (per pretraining run).
    claims: one row per pair of models on a task, size and budget (and each model vs the control): task, size,
        budget_flops, model_a, model_b, about ("objectives": >= 2 pretraining runs a side; "checkpoints": one on a
        side), gap (a's mean unit score - b's), ci_low, ci_high (95% Welch t interval), p, p_holm (Holm-adjusted
        over the report), family (comparisons in it), min_detectable_gap (80% power), pretrain_runs_a/_b,
        seeds_a/_b (fine-tuning runs), verdict, left_out (runs that did not learn), flops_ratio_paper,
        flops_ratio_executed, and speedup_{a,b}[_low|_high|_withheld], wall_speedup_{a,b}[_low|_high]
        (compute each needs to reach the other's best score, from curves).
    report: the underlying bench.results.report.Report.
    """

    report: Report
    results: Path  # the folder holding bench.db (parquet re-reads the runs from it); the first, with several
    suite_lines: list[str] | None = None  # with suite=: the suite's section, appended to the md rendering
    paper: dict[str, float] | None = None  # with suite=: its published number per model, a column of csv/json/parquet
    sources: tuple[Path, ...] = ()  # every results folder read, when several were read as one
    _images: list[PlotImage] | None = field(default=None, init=False, repr=False, compare=False)

    # DataFrames on first use: rendering markdown needs no pandas (half a second of every `bench report`)
    @property
    def table(self) -> pd.DataFrame:
        return self.report.comparison

    @property
    def leaderboard(self) -> pd.DataFrame:
        return self.report.leaderboard

    @cached_property
    def claims(self) -> pd.DataFrame:
        from bench.results.claims import claims_frame

        return claims_frame(self.report.claims)

    def images(self) -> list[PlotImage]:
        """The report's plots (score vs FLOPs, pretraining loss, final scores), drawn once."""
        if self._images is None:
            from bench.results.plots import report_plots

            self._images = report_plots(self.report)
        return self._images

    def render(self, fmt: str = "md", *, images: list[PlotImage] | None = None) -> str:
        """The report as text: md (with the suite's section, if any), html (plots embedded), csv, latex, json."""
        from bench.results.formats import NEEDS_IMAGES, render

        if images is None and fmt in NEEDS_IMAGES:
            images = self.images()
        text = render(self.report, fmt, images=images, paper=self.paper)
        if self.suite_lines is not None and fmt == "md":
            text = text.rstrip("\n") + "\n" + "\n".join(self.suite_lines)
        return text

    def write(self, fmt: str, path: str | os.PathLike[str], *, images: list[PlotImage] | None = None) -> Path:
        """Write the report to `path` in any format (parquet: the long table of the report's runs); returns it."""
        from bench.results.formats import BINARY, write

        path = Path(path)
        if fmt in BINARY:
            from bench.results.merge import open_stores

            with open_stores([_store_path(p) for p in (self.sources or (self.results,))]) as store:
                return write(self.report, fmt, path, store=store, paper=self.paper)
        text = self.render(fmt, images=images)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        return path

    def to_html(self, path: str | os.PathLike[str]) -> Path:
        """One self-contained HTML file (plots embedded as data: URIs, nothing fetched); returns its path."""
        return self.write("html", path)

    def write_plots(self, folder: str | os.PathLike[str]) -> list[Path]:
        """The plots as PNG and SVG files in `folder`; returns the files written."""
        from bench.results.plots import write_plots

        return write_plots(self.images(), folder)


def report(results: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] = "results", *, task: str | Iterable[str] | None = None,
           model: str | Iterable[str] | None = None, size: str | Iterable[str] | None = None,
           budget: float | Iterable[float] | None = None, control: str | None = "auto",
           suite: str | None = None) -> ReportView:
    """Tables, claims and plots from the results store alone (nothing is recomputed), as `bench report`.

    task, model, size, budget: keep only these (one value or several); the no-pretraining control is kept
    at every budget. control: "auto" (the store's model that does not pretrain), a model, or None/"none".
    suite: also the suite's section (its models' scores beside the paper's); without `model`, only its models.
    results: one results folder, or several read as one (nothing copied; a run in two of them with different
    metrics is a MergeConflict). A missing store is a BenchError naming the folder.
    """
    from bench.results.merge import open_stores
    from bench.results.report import build_report

    folders = _folders(results)
    dbs = [_store_path(f) for f in folders]
    ctrl = None if control is None or control.lower() in ("none", "") else control
    models = _names(model)
    the_suite = None
    if suite:
        from bench.config import load_experiment
        from bench.suite import load_suite

        the_suite = load_suite(suite)  # a ConfigError naming the known suites when there is none
        if not models:  # the suite's models and its control
            exp = load_experiment(suite=suite, sized=False)  # its models only: no size settings (nor torch)
            models = tuple(exp.models) + ((exp.control,) if exp.control else ())
    budgets = None if budget is None else tuple(float(b) for b in ([budget] if isinstance(budget, (int, float))
                                                                   else budget))
    with open_stores(dbs) as store:
        store.check_integrity()  # a damaged store is an error, never a silently partial report
        rep = build_report(store, tasks=_names(task) or None, models=models or None, sizes=_names(size) or None,
                           budgets=budgets or None, control=ctrl)
    lines = None
    if the_suite is not None:
        from bench.results.paper import suite_lines

        lines = suite_lines(rep.seeds, the_suite, rep.control, rep.convention, models=list(models))
    return ReportView(rep, folders[0], lines, None if the_suite is None else dict(the_suite.paper),
                      sources=tuple(folders) if len(folders) > 1 else ())


def _folders(results: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    """One results folder or several, as Paths (at least one)."""
    if isinstance(results, (str, os.PathLike)):
        return [Path(results)]
    folders = [Path(r) for r in results]
    if not folders:
        raise BenchError("no results folder given: name at least one (--results DIR).")
    return folders


def _names(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _store_path(results: str | os.PathLike[str]) -> Path:
    """bench.db in `results`, which must exist: reading never creates a store."""
    from bench.results.store import DB_NAME

    db = Path(results) / DB_NAME
    if not db.exists():
        raise BenchError(f"no results store at {db}: run `bench run` first, or point --results at the folder holding it.")
    return db


# --- bench.load -----------------------------------------------------------------------------------


@dataclass
class Loaded:
    """A results store as tidy frames, the input for your own plots: `metrics.merge(runs, on="run_id")`.

    runs: one row per run: run_id, kind (pretrain/finetune), model, task, size, budget, seed, parent_id (a
        fine-tuning run's pretraining run), status, started_at, finished_at, wall_s, git_sha, code_version,
        the run's spec flattened as `spec.<key>` and its environment as `env.<key>`.
    metrics: one row per metric point: run_id, name, step (NaN for a final scalar), value, and the time
        columns the store keeps.
    """

    runs: pd.DataFrame
    metrics: pd.DataFrame


def load(results: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] = "results") -> Loaded:
    """Every run and metric point of a results store (or of several, read as one: nothing copied) as tidy
    DataFrames (nothing is recomputed)."""
    from bench.results.merge import open_stores
    from bench.results.tidy import metrics_frame, runs_frame

    with open_stores([_store_path(f) for f in _folders(results)]) as store:
        store.check_integrity()
        return Loaded(runs_frame(store), metrics_frame(store))
