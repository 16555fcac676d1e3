"""`bench`: pretrain objectives at matched compute, fine-tune, store, compare.

Subcommands: run, report, list, flops. Every error is one line naming the problem and the
fix, with a non-zero exit.
"""

from __future__ import annotations

import functools
import json
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any, Callable

import click

from bench.distributed import launched
from bench.errors import BenchError, Interrupted


def _friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """User errors -> one line and exit 2; SIGINT/SIGTERM -> one line and exit 130/143, no traceback.

    Adds `--debug` (or BENCH_DEBUG=1) to the command: a user error then also prints its traceback,
    and that of the exception behind it (a plug-in's import error, a backend constructor's error).
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, debug: bool = False, **kwargs: Any) -> Any:
        old = signal.getsignal(signal.SIGTERM)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _raise_interrupted)  # SIGTERM (SLURM, kill) unwinds like Ctrl-C
        try:
            return fn(*args, **kwargs)
        except BenchError as exc:
            if launched().is_main:  # under a launcher, rank 0 speaks for all
                if debug:
                    click.echo("".join(traceback.format_exception(exc)).rstrip("\n"), err=True)
                click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt as exc:
            signum = getattr(exc, "signum", signal.SIGINT)
            what = str(exc) if isinstance(exc, Interrupted) else "interrupted by SIGINT"
            if launched().is_main:
                click.echo(f"{what}. Finished runs are kept in the store; re-run the same command to continue "
                           f"(an interrupted pretraining run resumes from its last resume state).", err=True)
            sys.exit(128 + int(signum))
        finally:
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, old)

    return click.option("--debug", is_flag=True, envvar="BENCH_DEBUG",
                        help="On an error, also print its traceback (a plug-in's or a backend's included).")(wrapper)


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="electra-bench")
def main() -> None:
    """Compare language-model pretraining objectives (ELECTRA, BERT MLM, ...) at matched FLOPs.

    \b
    bench run --models electra,bert --task sst2   pretrain both on one FLOP budget, fine-tune, compare
    bench report                                  the comparison table from the results store
    bench list                                    registered models, tasks and size presets
    bench flops --model electra --size small      analytic FLOPs, per component

    Settings come from bench.toml (or --config), then the flags. Data comes from --data or
    $BENCH_DATA_DIR (glue/<TASK>/*.tsv, corpus/<name>/, vocab/<name>/vocab.txt).
    """


@main.command()
@click.option("--models", help="Comma-separated models to compare (see `bench list`), e.g. electra,bert. "
              "Also hf:<hub id> or path:<dir> for existing checkpoints.")
@click.option("--task", help="Task to fine-tune on (see `bench list`), or `glue` for every GLUE task present.")
@click.option("--size", help="Size preset: tiny (default without a GPU), small (default with one), base.")
@click.option("--budget", help="Pretraining budget: FLOPs (3e13), a share of a paper run "
              "(electra-small@6.25%), or wall-clock (20min).")
@click.option("--convention", "budget_convention", type=click.Choice(["paper", "executed"]),
              help="FLOP convention the budget is counted in (default paper).")
@click.option("--seeds", type=click.IntRange(min=1), help="Fine-tuning seeds per model and task (default: the preset's, 3).")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), help="Override every task's fine-tuning epochs (a quick look).")
@click.option("--control", help="No-pretraining control added to the comparison (default scratch; `none` to drop).")
@click.option("--curve", is_flag=True, default=None, help="Also fine-tune the checkpoints saved at 1/16..1/2 of the budget.")
@click.option("--suite", help="A named experiment (see `bench list`: paper-table1, paper-table5, paper-figure3, "
              "mask-rate) or a suite file: its models, tasks and options, and the paper's numbers printed beside "
              "the measured ones. Layered over bench.toml; the other flags override it.")
@click.option("--results", help="Results folder holding bench.db and run folders (default ./results).")
@click.option("--data", help="Data folder (overrides $BENCH_DATA_DIR).")
@click.option("--config", "config", type=click.Path(dir_okay=False), help="Experiment file (default ./bench.toml).")
@click.option("--quiet", is_flag=True, default=None, help="No progress bars.")
@click.option("--precision", "pretrain__precision", type=click.Choice(["auto", "fp32", "bf16"]),
              help="Pretraining precision: auto (default) is bf16 autocast on a GPU that supports it, else fp32.")
@click.option("--compile", "pretrain__compile", type=click.Choice(["auto", "true", "false"]),
              help="torch.compile the pretraining step: auto (default) on a GPU, falling back to eager with a "
              "warning if compilation fails; true also on the CPU.")
@click.option("--executor", "executor__kind", type=click.Choice(["inline", "local", "slurm"]),
              help="inline (default): runs execute here; local / slurm: one submitit job per run (this process "
              "submits, watches and alone writes the store). [executor] in bench.toml holds the rest.")
@click.option("--partition", "executor__partition", help="SLURM partition for the jobs.")
@click.option("--gpus-per-job", "executor__gpus_per_job", type=click.IntRange(min=0), help="GPUs per job.")
@click.option("--cpus-per-job", "executor__cpus_per_job", type=click.IntRange(min=1), help="CPUs per job (task).")
@click.option("--time-limit", "executor__time_limit_min", type=click.IntRange(min=1),
              help="Job time limit in minutes; a job reaching it is requeued and resumes (default 1440).")
@click.option("--account", "executor__account", help="SLURM account.")
@click.option("--qos", "executor__qos", help="SLURM quality of service.")
@click.option("--processes-per-job", "executor__processes_per_job", type=click.IntRange(min=1),
              help="Processes per job: > 1 makes each job a DDP run (one per GPU).")
@_friendly
def run(config: str | None, epochs: float | None, suite: str | None, **flags: Any) -> None:
    """Pretrain each model on the same FLOP budget, fine-tune over seeds, store and compare.

    Runs already done in the results store are skipped, so re-running the same command only
    fills in what is missing (a failed run is retried).

    \b
    bench run --suite paper-table5 --size tiny --seeds 2   the paper's Table 5 at CPU scale,
                                                         beside the published numbers
    """
    from bench.config import load_experiment
    from bench.plan import plan_experiment
    import pandas as pd

    from bench.results.report import comparison_table, failed_rows, render, verdict_lines
    from bench.runner import Runner, register_config_entries

    from bench.distributed import init

    ranks = init()  # under torchrun / accelerate launch: join the process group first
    if flags.get("control") is not None and flags["control"].lower() in ("none", ""):
        flags["control"] = ""
    exp = load_experiment(config, flags, suite=suite)
    if exp.control == "":
        import dataclasses

        exp = dataclasses.replace(exp, control=None)
    register_config_entries(exp)
    tasks = _expand_tasks(exp.task, exp.data_dir)
    plan = plan_experiment(exp, curve=exp.curve, epochs=epochs, tasks=tasks)
    say = (lambda s: None) if exp.quiet else click.echo
    runner = Runner(plan, progress=not exp.quiet, echo=click.echo, ranks=ranks)
    plan = runner.prepare()  # everything checked, data prepared, before the first step
    if not ranks.is_main:
        sys.exit(runner.follow())  # train each run with rank 0, which prints and records
    say(f"plan: {len(plan.pretrain_runs)} pretraining and {len(plan.finetune_runs)} fine-tuning runs; "
        f"size {plan.size.name}, budget {plan.budget.text} ({plan.budget.value:.3g} "
        f"{'s' if plan.budget.is_time else 'FLOPs, ' + exp.budget_convention + ' convention'}), "
        f"results in {exp.results_dir}")
    summary = runner.run()
    df = comparison_table(runner.store, run_ids=[f.id for f in plan.finetune_runs])
    failed = failed_rows(runner.store, [p.id for p in plan.pretrain_runs], [f.id for f in plan.finetune_runs],
                         plan.task_names)
    click.echo(render(df if failed.empty else pd.concat([df, failed], ignore_index=True), "md"))
    for line in verdict_lines(df, exp.control):
        click.echo(line)
    if len(plan.task_names) > 1:  # several tasks (e.g. --task glue): the leaderboard carries the average
        from bench.results.report import leaderboard, leaderboard_caption, pretrain_frame, render_leaderboard

        board = leaderboard(df, pretrain_frame(runner.store))
        click.echo("\n" + render_leaderboard(board, "md", plan.task_names))
        click.echo(leaderboard_caption(board))
    if exp.suite:  # the paper's numbers beside the measured ones, and whether the ordering agrees
        from bench.results.paper import suite_lines
        from bench.results.report import filter_finetune, finetune_frame
        from bench.suite import load_suite

        ft = filter_finetune(finetune_frame(runner.store), run_ids=[f.id for f in plan.finetune_runs])
        for line in suite_lines(ft, load_suite(exp.suite), exp.control, exp.budget_convention,
                                models=[*exp.models, *([exp.control] if exp.control else [])]):
            click.echo(line)
    extra = "".join(f", {n} {what}" for n, what in ((summary.resumed, "resumed from a resume state"),
                                                     (summary.retried, "retried after a failed or dead attempt"),
                                                     (summary.submitted, "submitted as jobs"),
                                                     (summary.adopted, "jobs of an earlier driver collected"))
                    if n)
    click.echo(f"done in {summary.wall_s:.0f}s: {summary.pretrained} pretrained, {summary.finetuned} fine-tuned, "
               f"{summary.skipped} already in the store{extra}.")
    if summary.failed:
        click.echo(f"{len(summary.failed)} run(s) failed (recorded in the store; re-run to retry):", err=True)
        for f in summary.failed:
            click.echo(f"  {f}", err=True)
        sys.exit(1)


def _expand_tasks(task: str, data_dir: Path | None) -> tuple[str, ...]:
    if task != "glue":
        return (task,)
    from bench.errors import DataError
    from tasks.glue import available_glue_tasks

    found = tuple(available_glue_tasks(data_dir))
    if not found:
        raise DataError(f"--task glue: no GLUE task data under {data_dir}/glue/ (set BENCH_DATA_DIR or --data).")
    return found


@main.command()
@click.option("--results", default="results", show_default=True, help="Results folder holding bench.db.")
@click.option("--format", "fmt", type=click.Choice(["md", "html", "csv", "latex", "json"]), default="md",
              show_default=True, help="md: comparison table, leaderboard and claim sentences (terminal); html: one "
              "self-contained file with plots embedded; latex: the tables and claims; csv/json: the comparison rows "
              "at full precision (one per model, size, task and pretraining-FLOPs point).")
@click.option("--out", type=click.Path(dir_okay=False), help="Write to this file instead of stdout.")
@click.option("--plots", "plots_dir", type=click.Path(file_okay=False),
              help="Also write the plots (score vs FLOPs, pretraining loss vs FLOPs, final scores) as PNG and SVG "
              "into this folder. The html format embeds them either way.")
@click.option("--task", multiple=True, help="Only these tasks (repeatable).")
@click.option("--model", multiple=True, help="Only these models (repeatable).")
@click.option("--size", multiple=True, help="Only these size presets (repeatable).")
@click.option("--budget", multiple=True, type=float, help="Only runs with this FLOP budget (repeatable); the "
              "no-pretraining control is kept, as it is every budget's baseline.")
@click.option("--control", default="auto", show_default=True, help="The no-pretraining control to compare against "
              "(auto: the store's model that does not pretrain, e.g. scratch; none: no control claims).")
@click.option("--suite", help="Also print a suite's section (see `bench list`): its models' scores beside the paper's "
              "published numbers and whether the ordering agrees (md format). Without --model, only its models.")
@_friendly
def report(results: str, fmt: str, out: str | None, plots_dir: str | None, task: tuple[str, ...],
           model: tuple[str, ...], size: tuple[str, ...], budget: tuple[float, ...], control: str,
           suite: str | None) -> None:
    """Tables, claims and plots from the results store alone (nothing is recomputed).

    \b
    bench report                                     comparison table, leaderboard, claims
    bench report --format html --out results/report.html
    bench report --format csv --task sst2 > sst2.csv
    bench report --plots results/plots               also PNG + SVG figures

    Claims compare every pair of models on the same task and size at the same FLOP budget
    (and each against the no-pretraining control): the median-score gap with a 95% bootstrap
    interval over fine-tuning seeds and, with curves (`bench run --curve`), the compute each
    needs to reach the other's best score.
    """
    from bench.results.report import build_report, render_report
    from bench.runner import DB_NAME
    from bench.results.store import Store

    db = Path(results) / DB_NAME
    if not db.exists():
        raise BenchError(f"no results store at {db}: run `bench run` first, or point --results at the folder holding it.")
    ctrl = None if control.lower() in ("none", "") else control
    the_suite = None
    if suite:
        from bench.config import load_experiment
        from bench.suite import load_suite

        the_suite = load_suite(suite)  # a ConfigError naming the known suites when there is none
        if not model:  # the suite's models and its control
            exp = load_experiment(suite=suite)
            model = tuple(exp.models) + ((exp.control,) if exp.control else ())
    with Store(db) as store:
        store.check_integrity()  # a damaged store is an error, never a silently partial report
        rep = build_report(store, tasks=task or None, models=model or None, sizes=size or None,
                           budgets=budget or None, control=ctrl)
    images = []
    if fmt == "html" or plots_dir:
        from bench.results.plots import report_plots, write_plots

        images = report_plots(rep)
        if plots_dir:
            written = write_plots(images, plots_dir)
            click.echo(f"wrote {len(written)} plot files to {plots_dir}", err=True)
    text = render_report(rep, fmt, images=images)
    if the_suite is not None and fmt == "md":
        from bench.results.paper import suite_lines

        text = text.rstrip("\n") + "\n" + "\n".join(suite_lines(rep.seeds, the_suite, rep.control, rep.convention,
                                                                models=list(model)))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        click.echo(f"wrote {out}", err=True)
    else:
        click.echo(text.rstrip("\n"))


@main.command()
@click.option("--results", default="results", show_default=True, help="Results folder holding bench.db.")
@click.option("--format", "fmt", type=click.Choice(["md", "csv", "json"]), default="md", show_default=True)
@click.option("--all", "show_all", is_flag=True, help="Also runs that are done (default: only the others, "
              "unless every run is done).")
@_friendly
def status(results: str, fmt: str, show_all: bool) -> None:
    """Every run of a results folder: its state, attempts, job id and node, elapsed time and error.

    \b
    bench status                       runs queued, running or failed (or all, when all are done)
    bench status --all --format csv    everything, for a spreadsheet
    """
    from bench.results.status import status_frame, render_status
    from bench.results.store import Store
    from bench.runner import DB_NAME

    db = Path(results) / DB_NAME
    if not db.exists():
        raise BenchError(f"no results store at {db}: run `bench run` first, or point --results at the folder holding it.")
    with Store(db) as store:
        store.check_integrity()
        frame = status_frame(store, show_all=show_all)
    click.echo(render_status(frame, fmt))


@main.command(name="list")
@_friendly
def list_cmd() -> None:
    """Show every registered model, task and size preset with a one-line description and its source
    (builtin, bench.toml, or the plug-in's distribution and version).

    Plug-ins are imported to show their own descriptions; one that cannot be used (it fails to
    import, or its name is defined twice) is listed as a problem on stderr and the rest is shown.
    """
    from tabulate import tabulate

    from bench.config import load_experiment
    from bench.registry import MODELS, TASKS
    from bench.runner import register_config_entries
    from models.sizes import SIZES

    debug = click.get_current_context().params.get("debug", False)
    if Path("bench.toml").exists():
        register_config_entries(load_experiment())
    problems = []
    for title, registry in (("models", MODELS), ("tasks", TASKS)):
        entries = registry.load_plugins()  # a plug-in that fails to import becomes a problem line
        problems += [e for e in entries if e.problem]
        rows = [(e.name, "(cannot be used: see the problem below)" if e.problem and e.is_plugin else e.description,
                 e.source) for e in entries]
        click.echo(("\n" if title == "tasks" else "") + f"{title}:")
        click.echo(tabulate(rows, tablefmt="plain"))
    click.echo("\nsize presets:")
    click.echo(tabulate([(s.name, s.description) for s in SIZES.values()], tablefmt="plain"))
    from bench.suite import available_suites, load_suite

    click.echo("\nsuites (bench run --suite NAME):")
    click.echo(tabulate([(n, (su := load_suite(n)).description, su.reproduces) for n in available_suites()],
                        tablefmt="plain"))
    for e in problems:
        if debug and e.error is not None:
            click.echo("".join(traceback.format_exception(e.error)).rstrip("\n"), err=True)
        click.echo(f"problem: {e.problem}", err=True)


@main.command()
@click.option("--model", required=True, help="A registered model (see `bench list`).")
@click.option("--size", default="tiny", show_default=True, help="Size preset.")
@click.option("--steps", type=click.IntRange(min=1), default=1, show_default=True, help="Training steps to count.")
@click.option("--batch", type=click.IntRange(min=1), default=None, help="Sequences per step (default: the preset's).")
@click.option("--seq", type=click.IntRange(min=1), default=128, show_default=True, help="Tokens per sequence.")
@click.option("--convention", type=click.Choice(["paper", "executed"]), default="paper", show_default=True)
@click.option("--inference", is_flag=True, help="One sequence's forward pass of the encoder instead.")
@click.option("--measure", is_flag=True, help="Also run one real step under FlopCounterMode and compare.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object; key `total` is the total FLOPs.")
@_friendly
def flops(model: str, size: str, steps: int, batch: int | None, seq: int, convention: str, inference: bool,
          measure: bool, as_json: bool) -> None:
    """Analytic FLOPs of a backend, per component (the paper's convention or what the code executes).

    A model's options ([models.NAME] in ./bench.toml, variants with `base` included) apply."""
    from bench.config import load_experiment
    from bench.registry import MODELS
    from bench.runner import register_config_entries
    from bench.train.flops import flops_report
    from models.sizes import get_size

    options: dict[str, Any] = {}
    if Path("bench.toml").exists():
        exp = load_experiment()
        register_config_entries(exp)
        options = exp.backend_options(model)
    MODELS.get(model)
    preset = get_size(size)
    batch = batch or preset.pretrain_batch
    rep = flops_report(model, size, steps=steps, batch=batch, seq=seq, convention=convention, inference=inference,
                       measure=measure, options=options)
    if as_json:
        click.echo(json.dumps(rep, indent=2, sort_keys=True, default=float))
        return
    from tabulate import tabulate

    rows = [(k, f"{v:.4g}") for k, v in rep["components"].items()] + [("total", f"{rep['total']:.4g}")]
    what = "one sequence, forward" if inference else f"{steps:,} steps x batch {batch} x seq {seq}"
    click.echo(f"{model} / {size}: {what}, {convention} convention")
    click.echo(tabulate(rows, headers=["component", "FLOPs"], tablefmt="github", disable_numparse=True))
    if measure and "measured_per_step" in rep:
        click.echo(f"one step measured (FlopCounterMode): {rep['measured_per_step']:.4g}; analytic executed: "
                   f"{rep['executed_per_step']:.4g}; measured/analytic = {rep['measured_ratio']:.4f}")


if __name__ == "__main__":
    main()
