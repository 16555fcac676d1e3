"""`bench`: pretrain objectives at matched compute, fine-tune, store, compare.

Subcommands: run, plan, report, status, export, merge, list, flops. Every error is one line naming the problem and the
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
from bench.results.formats import BINARY, FORMATS  # light: names only, no pandas (the report path stays fast)


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
@click.option("--pretrain-seeds", "pretrain_seeds", type=click.IntRange(min=1),
              help="Independent pretraining runs per model (default 1), each fine-tuned over --seeds: a claim about "
              "objectives needs at least 2 per model, since one run compares two checkpoints.")
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
@click.option("--tracker", "trackers", multiple=True, metavar="NAME",
              help="Experiment tracker to log runs to: tensorboard|mlflow|wandb|aim (repeatable; also [run] trackers "
              "in bench.toml). Views of the store: the store stays the record.")
@_friendly
def run(config: str | None, epochs: float | None, suite: str | None, trackers: tuple[str, ...],
        **flags: Any) -> None:
    """Pretrain each model on the same FLOP budget, fine-tune over seeds, store and compare.

    Runs already done in the results store are skipped, so re-running the same command only
    fills in what is missing (a failed run is retried).

    \b
    bench run --suite paper-table5 --size tiny --seeds 2   the paper's Table 5 at CPU scale,
                                                         beside the published numbers
    """
    from bench.api import execute

    if trackers:  # only when given: [run] trackers in bench.toml otherwise
        flags["trackers"] = tuple(trackers)
    result = execute(flags, config=config, suite=suite, epochs=epochs, echo=click.echo)
    if result.exit_code is not None:  # a follower rank under a launcher: rank 0 prints and records
        sys.exit(result.exit_code)
    from bench.results.formats.markdown import leaderboard_caption, render, render_leaderboard

    click.echo(render(result.table, "md"))
    for line in result.verdicts:
        click.echo(line)
    if result.leaderboard is not None:  # several tasks (e.g. --task glue): the leaderboard carries the average
        click.echo("\n" + render_leaderboard(result.leaderboard, "md", result.tasks))
        click.echo(leaderboard_caption(result.leaderboard))
    for line in result.suite_lines:
        click.echo(line)
    click.echo(result.summary_line())
    failures = result.failure_lines()
    for line in failures:
        click.echo(line, err=True)
    if failures:
        sys.exit(1)


@main.command(name="plan")
@click.option("--models", help="Comma-separated models to compare (as `bench run`).")
@click.option("--task", help="Task to fine-tune on, or `glue`.")
@click.option("--size", help="Size preset: tiny, small, base.")
@click.option("--budget", help="Pretraining budget (as `bench run`).")
@click.option("--seeds", type=click.IntRange(min=1), help="Fine-tuning seeds per pretraining run.")
@click.option("--pretrain-seeds", "pretrain_seeds", type=click.IntRange(min=1),
              help="Independent pretraining runs per model.")
@click.option("--control", help="No-pretraining control (default scratch; `none` to drop).")
@click.option("--suite", help="A named experiment (see `bench list`) or a suite file.")
@click.option("--results", help="Results folder: its replicated runs give the noise, when it has any.")
@click.option("--data", help="Data folder (overrides $BENCH_DATA_DIR).")
@click.option("--config", "config", type=click.Path(dir_okay=False), help="Experiment file (default ./bench.toml).")
@click.option("--power", is_flag=True, help="Also print the smallest gap the claims can detect with 80% power.")
@click.option("--gap", type=click.FloatRange(min=0, min_open=True),
              help="A true gap in score units (0.01 = one point): print the pretraining runs it needs (implies --power).")
@_friendly
def plan_cmd(config: str | None, suite: str | None, power: bool, gap: float | None, **flags: Any) -> None:
    """The runs an experiment needs, without running them; with --power, what its claims can detect.

    Claims treat the pretraining run as the unit (Welch t over per-run medians, Holm over the report's
    comparisons). The noise comes from the results store's replicated runs of the same task and size
    when it has them, else from the documented defaults.

    \b
    bench plan --power                                  the default experiment
    bench plan --pretrain-seeds 5 --seeds 5 --gap 0.01  runs needed to find a one-point gap
    """
    from bench.api import plan_lines

    for line in plan_lines(flags, config=config, suite=suite, power=power, gap=gap):
        click.echo(line)


@main.command()
@click.option("--results", default=("results",), show_default=True, multiple=True,
              help="Results folder holding bench.db. Repeat it to read several stores as one (e.g. from two "
              "machines; nothing is copied): the leaderboard's machines column says where each row ran.")
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="md",
              show_default=True, help="md: comparison table, leaderboard and claim sentences (terminal); html: one "
              "self-contained file with plots embedded; latex: the tables and claims; csv/json: the comparison rows "
              "at full precision (one per model, size, task and pretraining-FLOPs point); parquet: one row per run "
              "(spec, environment, final metrics) for pandas, polars or DuckDB, written with --out (needs pyarrow).")
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
def report(results: tuple[str, ...], fmt: str, out: str | None, plots_dir: str | None, task: tuple[str, ...],
           model: tuple[str, ...], size: tuple[str, ...], budget: tuple[float, ...], control: str,
           suite: str | None) -> None:
    """Tables, claims and plots from the results store alone (nothing is recomputed).

    \b
    bench report                                     comparison table, leaderboard, claims
    bench report --format html --out results/report.html
    bench report --format csv --task sst2 > sst2.csv
    bench report --format parquet --out runs.parquet one row per run, for pandas or DuckDB
    bench report --plots results/plots               also PNG + SVG figures

    Claims compare every pair of models on the same task and size at the same FLOP budget
    (and each against the no-pretraining control): the gap in median score with a 95% Welch t
    interval over pretraining runs (over fine-tuning seeds, and said to compare two checkpoints,
    where a side has one run), Holm-corrected over the report's comparisons, with the smallest
    gap the design detects; runs that did not learn are left out. With curves (`bench run
    --curve`): the compute each needs to reach the other's best score.
    """
    if fmt in BINARY and not out:
        raise BenchError(f"--format {fmt} writes a binary file, not text for the terminal: give --out FILE "
                         f"(e.g. --out results/runs.{fmt}).")
    from bench.api import report as build

    view = build(list(results), task=task or None, model=model or None, size=size or None, budget=budget or None,
                 control=control, suite=suite)
    images = []
    if fmt == "html" or plots_dir:
        images = view.images()
        if plots_dir:
            written = view.write_plots(plots_dir)
            click.echo(f"wrote {len(written)} plot files to {plots_dir}", err=True)
    if out:
        view.write(fmt, out, images=images)
        click.echo(f"wrote {out}", err=True)
    else:
        click.echo(view.render(fmt, images=images).rstrip("\n"))


@main.command()
@click.option("--results", default="results", show_default=True, help="Results folder holding bench.db.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The bundle file to write (e.g. "
              "results-hostA.bench.zip).")
@click.option("--checkpoints", is_flag=True, help="Also carry each pretraining run's checkpoint folders (large).")
@_friendly
def export(results: str, out: str, checkpoints: bool) -> None:
    """Write a results store as one portable, checksummed file (a bundle) for `bench merge` elsewhere.

    Every finished or failed run: its spec, environment and provenance (code, data and plug-in
    fingerprints, package versions, host and hardware), status and metrics; runs still in flight
    are left out. Checkpoints only with --checkpoints.

    \b
    bench export --results results --out hostA.bench.zip
    """
    from bench.results.export import export_bundle

    manifest = export_bundle(results, out, checkpoints=checkpoints)
    left = f"; {len(manifest['left_out'])} run(s) in flight left out" if manifest["left_out"] else ""
    files = len(manifest["sha256"]) - 1
    click.echo(f"wrote {out}: {manifest['runs']} run(s)" + (f", {files} checkpoint file(s)" if files else "") + left)


@main.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--into", required=True, type=click.Path(file_okay=False), help="Results folder to merge into (made "
              "if missing; its own runs are kept).")
@click.option("--checkpoints", is_flag=True, help="Also copy the merged pretraining runs' checkpoint folders "
              "(from stores, or bundles exported with --checkpoints).")
@_friendly
def merge(sources: tuple[str, ...], into: str, checkpoints: bool) -> None:
    """Build one store from several stores and bundles (from `bench export`), idempotently.

    A run in several sources with the same metrics is kept once; with different metrics it is a
    conflict: listed, nothing is written, and the exit status is non-zero. Runs of other code or
    data have other ids and stay apart; the summary names each fingerprint.

    \b
    bench merge results-a hostB.bench.zip --into results-all
    bench report --results results-all
    """
    from bench.results.merge import merge as merge_stores

    for line in merge_stores(sources, into, checkpoints=checkpoints).lines():
        click.echo(line)


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
    from bench.results.store import DB_NAME, Store

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
