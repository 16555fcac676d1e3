"""A suite's runs beside the paper's published numbers: the `paper` column and the ordering sentence.

Scores are put on the paper's scale: for GLUE tasks the paper's GLUE score (Matthews for CoLA,
Spearman for STS-B, accuracy for the rest, WNLI left out), x100. The measured score is the one the
paper computes, over the tasks the run has: each task's median over seeds, averaged over tasks. Its
label says how many tasks that is, beside how many the paper's score averages (8 for its GLUE
score), since a 3-task average and an 8-task one differ in level. For the ordering, a model's
score per seed is the average over tasks of that seed's runs, grouped by pretraining run, and each
pair the paper orders is a claim as bench.results.inference makes it (the pretraining run as the
unit; Holm over the ordering's pairs and the control checks); fine-tuning runs that did not learn
are left out.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bench.results.claims import LEVEL
from bench.results.inference import Comparison, adjust_family, compare
from bench.results.tables import GLUE_AVERAGE_EXCLUDES, GLUE_TASKS, paper_metric_column
from bench.suite import Suite

PAPER_SEEDS = 10  # the paper reports the median of 10 fine-tuning runs


@dataclass(frozen=True)
class Setting:
    """One size and budget of a suite's runs: the rows compared with each other and with the paper."""

    size: str
    budget_flops: float
    tasks: tuple[str, ...]
    scores: dict[str, list[float]]  # model -> per-seed average score (x100), every pretraining run
    per_task: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # model -> task -> per-seed (x100)
    glue: bool = True  # the tasks are GLUE tasks (the paper's GLUE score)
    runs: dict[str, list[list[float]]] = field(default_factory=dict)  # model -> per pretraining run, its per-seed
    # averages over the seeds whose runs all learned: what the ordering compares

    @property
    def label(self) -> str:
        """'3 GLUE tasks': what the measured average is over."""
        n = len(self.tasks)
        return f"{n} {'GLUE ' if self.glue else ''}task{'s' * (n != 1)}"

    def measured(self, model: str) -> tuple[float, float, float]:
        """(score, low, high) as the paper computes its score: each task's median over seeds, averaged over the
        tasks; low and high average each task's lowest and highest seed the same way."""
        tasks = self.per_task.get(model)
        if not tasks:  # only per-seed averages known
            xs = self.scores[model]
            return statistics.median(xs), min(xs), max(xs)
        return (statistics.fmean(statistics.median(v) for v in tasks.values()),
                statistics.fmean(min(v) for v in tasks.values()), statistics.fmean(max(v) for v in tasks.values()))


def seed_scores(ft: pd.DataFrame) -> list[Setting]:
    """Per size and budget: each model's per-seed average over tasks at the full budget (x100).

    `ft` is one row per fine-tuning run (tables.finetune_frame). A seed counts only when it has a
    run on every task of its setting, so averages are over the same tasks for every model.
    """
    if ft.empty:
        return []
    ft = ft[ft["fraction"] >= 1.0].drop_duplicates(["model", "size", "task", "seed", "budget_flops"], keep="last")
    glue = all(t in GLUE_TASKS for t in ft["task"].unique())
    ft = ft[~ft["task"].isin(GLUE_AVERAGE_EXCLUDES)] if glue else ft
    out = []
    # the control spent no FLOPs: it belongs to every budget of its size
    control_rows = ft[ft["budget_flops"].fillna(0) == 0]
    for (size, budget), g in ft[ft["budget_flops"].fillna(0) > 0].groupby(["size", "budget_flops"], sort=True):
        g = pd.concat([g, control_rows[control_rows["size"] == size]])
        tasks = tuple(sorted(g["task"].unique()))
        scores: dict[str, list[float]] = {}
        per_task: dict[str, dict[str, list[float]]] = {}
        runs: dict[str, list[list[float]]] = {}
        for model, m in g.groupby("model", sort=False):
            per_seed = []
            by_task: dict[str, list[float]] = {t: [] for t in tasks}
            by_run: dict[Any, list[float]] = {}
            keys = ["pretrain_seed", "seed"] if "pretrain_seed" in m else ["seed"]
            for key, s in m.groupby(keys, sort=True):
                if len(set(s["task"])) < len(tasks):
                    continue
                per_seed.append(seed_average(s, glue))
                for r in s.to_dict("records"):
                    by_task[r["task"]].append(100 * _paper_metric(r, glue))
                learned = "not_learned" not in s or not any(s["not_learned"].fillna("").astype(bool))
                run = key[0] if len(keys) == 2 else 0
                by_run.setdefault(run, [])
                if learned:  # a seed with a run that did not learn is no evidence about its objective
                    by_run[run].append(per_seed[-1])
            if per_seed:
                scores[str(model)] = per_seed
                per_task[str(model)] = by_task
                runs[str(model)] = list(by_run.values())
        out.append(Setting(str(size), float(budget), tasks, scores, per_task, glue, runs))
    return out


def _paper_metric(row: dict[str, Any], glue: bool) -> float:
    value = row.get(paper_metric_column(row["task"])) if glue else None
    return float(row["score"] if value is None or (isinstance(value, float) and math.isnan(value)) else value)


def seed_average(runs: pd.DataFrame, glue: bool) -> float:
    """One seed's score on the paper's scale: its runs' paper metric (GLUE) or score, averaged over tasks, x100."""
    return 100 * statistics.fmean(_paper_metric(r, glue) for r in runs.to_dict("records"))


PAPER_TABLE_COLUMNS = ["model", "size", "budget_flops", "tasks", "measured", "min", "max", "seeds", "paper"]


def paper_table(settings: list[Setting], suite: Suite, models: list[str] | None = None) -> pd.DataFrame:
    """One row per model and setting: the measured score (Setting.measured: the mean over the tasks present of
    each task's median over seeds, with the same mean of each task's min and max) beside the paper's.

    `tasks` says what the measured average is over ("3 GLUE tasks"); the paper's is over suite.paper_tasks.
    """
    rows = []
    for st in settings:
        order = [m for m in (models or []) if m in st.scores] + [m for m in st.scores if m not in (models or [])]
        for model in order:
            measured, low, high = st.measured(model)
            rows.append({"model": model, "size": st.size, "budget_flops": st.budget_flops, "tasks": st.label,
                         "measured": measured, "min": low, "max": high, "seeds": len(st.scores[model]),
                         "paper": suite.paper.get(model, math.nan)})
    return pd.DataFrame(rows, columns=PAPER_TABLE_COLUMNS)


@dataclass(frozen=True)
class PairCheck:
    better: str  # the paper's better model
    worse: str
    ci: Comparison  # measured better - worse: per-run means of per-seed averages (inference.compare), Holm-adjusted

    @property
    def outcome(self) -> str:
        """'agrees' | 'contradicts' (significant after correction) | 'noise' | 'unknown' (too few runs or seeds)."""
        return {"better": "agrees", "worse": "contradicts", "same": "noise", "unknown": "unknown"}[self.ci.verdict]


def _compare(st: Setting, a: str, b: str) -> Comparison:
    ra, rb = st.runs.get(a) or [st.scores[a]], st.runs.get(b) or [st.scores[b]]
    if not any(ra) or not any(rb):  # a model none of whose seeds learned: nothing to compare
        return compare([[0.0]], [[0.0]], level=LEVEL)
    return compare(ra, rb, level=LEVEL)


def ordering_checks(st: Setting, suite: Suite, control: str | None = None) -> tuple[list[PairCheck], list[Comparison]]:
    """The paper's ordered pairs present here, and each model against the control: one Holm family."""
    pairs = [(a, b) for a, b in suite.ordering if a in st.scores and b in st.scores]
    versus = [m for m in st.scores if control and control in st.scores and m != control]
    family = adjust_family([_compare(st, a, b) for a, b in pairs] + [_compare(st, m, control) for m in versus])
    return [PairCheck(a, b, c) for (a, b), c in zip(pairs, family)], family[len(pairs):]


def ordering_sentence(st: Setting, suite: Suite, control: str | None, convention: str = "paper") -> str:
    """Does the measured ordering agree with the paper's, and how sure is it, at this size and budget."""
    share = budget_share(st.budget_flops, suite, convention)
    where = (f"{suite.name} at {st.size}, {st.budget_flops:.3g} FLOPs ({convention} convention{share}) over "
             f"{', '.join(st.tasks)}; the paper ({suite.reproduces}) measured at {suite.setting or 'its own setting'}")
    checks, versus = ordering_checks(st, suite, control)
    if not checks:
        return f"{where}: none of the pairs the paper orders ({'; '.join(suite.claims) or 'none'}) has both models here."
    n = len(checks)
    counts = {k: sum(c.outcome == k for c in checks) for k in ("agrees", "contradicts", "noise", "unknown")}
    leaning = sum(c.outcome == "noise" and c.ci.gap > 0 for c in checks)
    family = checks[0].ci.family
    parts = [f"{counts['agrees']} agree at the {LEVEL:.0%} level (Holm over {family} comparison"
             f"{'s' * (family != 1)})", f"{counts['contradicts']} contradict it",
             f"{counts['noise']} are within noise ({leaning} leaning the paper's way)"]
    if counts["unknown"]:
        parts.append(f"{counts['unknown']} cannot be judged (too few runs, or a model that did not learn)")
    head = f"{where}: the paper orders {'; '.join(suite.claims)} ({n} pair{'s' * (n != 1)}); here " + ", ".join(parts)
    if counts["contradicts"]:
        bad = [f"{c.worse} > {c.better}" for c in checks if c.outcome == "contradicts"]
        body = f", so this run contradicts the paper's ordering at this budget ({', '.join(bad)})"
    elif counts["agrees"] == n:
        body = ", so the ordering agrees with the paper's"
    elif counts["agrees"]:
        body = ", so the ordering agrees with the paper's where it can tell and cannot tell the rest apart"
    else:
        body = ", so this run cannot tell whether the paper's ordering holds at this budget"
    if versus and not any(c.verdict == "better" for c in versus):
        body += (f"; no model beats the no-pretraining control ({control}), so the budget is too small for the "
                 f"objectives to differ and the comparison is no evidence about the paper's claim")
    if not all(c.ci.objectives for c in checks if c.ci.testable):
        fewest = min(min(len(st.runs.get(c.better) or [1]), len(st.runs.get(c.worse) or [1])) for c in checks)
        body += (f" (with {fewest} pretraining run{'s' * (fewest != 1)} per model this compares checkpoints, not "
                 f"objectives: --pretrain-seeds 2 or more makes it a claim about the objectives)")
    stuck = sorted(m for m, rs in st.runs.items() if not any(rs))
    if stuck:
        body += f"; left out, as no fine-tuning run of theirs learned the task: {', '.join(stuck)}"
    return head + body + "."


def budget_share(budget_flops: float, suite: Suite, convention: str = "paper") -> str:
    """', 0.57% of the paper's 1.4e18 FLOPs': the budget as a share of the total the suite's table gives
    (suite.reference_flops), or '' when the suite gives none or the convention is not the paper's."""
    totals = sorted(set(suite.reference_flops.values()))
    if not totals or convention != "paper":
        return ""
    return "; " + ", ".join(f"{100 * budget_flops / t:.3g}% of the paper's {_flops(t)} FLOPs" for t in totals)


def _flops(x: float) -> str:
    """1.4e18, as the paper and the suite files write it."""
    return f"{x:.3g}".replace("e+", "e")


def reference_line(suite: Suite, convention: str = "paper") -> str:
    """Which total a budget named as a share of a paper run ("electra-small@6.25%") is a share of, in this suite."""
    if not suite.reference_flops:
        return ""
    totals = ", ".join(f"{run} {_flops(v)}" for run, v in suite.reference_flops.items())
    if convention != "paper":
        return (f" A budget named as a share of a paper run is a share of this harness's {convention}-convention "
                f"count of that run here, not of the paper's totals ({totals} FLOPs, paper convention).")
    return (f" A budget named as a share of a paper run (e.g. {next(iter(suite.reference_flops))}@6.25%) is a share "
            f"of the total the paper gives for it: {totals} FLOPs, not of this harness's own count of that run.")


def setting_line(suite: Suite, convention: str = "paper") -> str:
    """What the paper's numbers are and where they were measured, and what a share of a paper run means here."""
    note = f" {suite.note}" if suite.note else ""
    return (f"{suite.name}: {suite.description}. Paper: {suite.reproduces}; {suite.metric} at "
            f"{suite.setting or 'see the note'}.{note}{reference_line(suite, convention)}")


def measured_line(settings: list[Setting], suite: Suite) -> str:
    """What the measured and paper columns average, in words: the two are over different tasks."""
    if not settings:
        return ""
    over = "; ".join(f"{st.label} ({', '.join(st.tasks)})" + (f" at {st.size}, {st.budget_flops:.3g} FLOPs"
                                                              if len(settings) > 1 else "") for st in settings)
    paper = (f"the published {suite.metric}, averaged over {suite.paper_tasks_label}" if suite.paper_tasks_label
             else f"the published {suite.metric}")
    return (f"measured: the mean over the tasks run here, {over}, of each task's median over seeds (min, max: the "
            f"same mean of each task's lowest and highest seed); paper: {paper}. Averages over different tasks "
            f"differ in level: compare the ordering, not the numbers.")


def curve_table(ft: pd.DataFrame, suite: Suite) -> pd.DataFrame:
    """Measured score at each share of the budget beside the paper's curve (suite.paper_curve), where it has one."""
    if not suite.paper_curve or ft.empty:
        return pd.DataFrame()
    glue = all(t in GLUE_TASKS for t in ft["task"].unique())
    rows = []
    for (model, size, budget, frac), g in ft.groupby(["model", "size", "budget_flops", "fraction"], sort=True):
        paper = suite.paper_curve.get(str(model), {})
        if not paper:
            continue
        tasks = set(g["task"])
        complete = [s for _, s in g.groupby("seed") if set(s["task"]) == tasks]
        by_task: dict[str, list[float]] = {}
        for s in complete:
            for r in s.to_dict("records"):
                by_task.setdefault(r["task"], []).append(100 * _paper_metric(r, glue))
        near = next((v for k, v in paper.items() if math.isclose(k, float(frac), rel_tol=1e-6)), math.nan)
        rows.append({"model": model, "size": size, "budget_flops": budget, "share": float(frac),
                     "tasks": f"{len(tasks)} {'GLUE ' if glue else ''}task{'s' * (len(tasks) != 1)}",
                     "measured": statistics.fmean(statistics.median(v) for v in by_task.values()) if complete
                     else math.nan, "seeds": len(complete), "paper": near})
    return pd.DataFrame(rows)


def render(table: pd.DataFrame) -> str:
    from tabulate import tabulate

    shown = table.copy()
    for col in shown.columns:
        if col.split(" (")[0] in ("measured", "min", "max", "paper"):
            shown[col] = [("-" if isinstance(v, float) and math.isnan(v) else f"{v:.1f}") for v in shown[col]]
    if "budget_flops" in shown:
        shown["budget_flops"] = [f"{v:.3g}" for v in shown["budget_flops"]]
    if "share" in shown:
        shown["share"] = [f"{v:g}" for v in shown["share"]]
    return tabulate(shown, headers="keys", tablefmt="github", showindex=False, disable_numparse=True)


def suite_lines(ft: pd.DataFrame, suite: Suite, control: str | None, convention: str = "paper",
                models: list[str] | None = None) -> list[str]:
    """The whole suite section of a report: setting, table beside the paper, curve table, ordering sentences.

    `models` orders the table's rows (the suite's models, then the control); others follow.
    """
    settings = seed_scores(ft)
    table = paper_table(settings, suite, models)
    labels = set(table["tasks"])
    if len(labels) == 1:  # one label for every row: in the header
        table = table.drop(columns="tasks").rename(columns={"measured": f"measured ({labels.pop()})"})
    if suite.paper_tasks_label:
        table = table.rename(columns={"paper": f"paper ({suite.paper_tasks_label})"})
    lines = ["", setting_line(suite, convention), render(table)]
    if settings:
        lines.append(measured_line(settings, suite))
    curve = curve_table(ft, suite)
    if not curve.empty:
        lines += ["", render(curve)]
    lines += [ordering_sentence(st, suite, control, convention) for st in settings]
    return lines
