"""A suite's runs beside the paper's published numbers: the `paper` column and the ordering sentence.

Scores are put on the paper's scale: for GLUE tasks the paper's GLUE score (Matthews for CoLA,
Spearman for STS-B, accuracy for the rest, WNLI left out) averaged over the tasks the run has,
x100. A model's score per seed is the average over tasks of that seed's runs, so the bootstrap
over seeds (bench.results.stats) gives the ordering its confidence.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench.results.claims import LEVEL
from bench.results.stats import GapCI, bootstrap_median_gap, verdict
from bench.results.tables import GLUE_AVERAGE_EXCLUDES, GLUE_TASKS, paper_metric_column
from bench.suite import Suite

PAPER_SEEDS = 10  # the paper reports the median of 10 fine-tuning runs
MIN_SEEDS = 5  # fewer than this on either side: the ordering is indicative only


@dataclass(frozen=True)
class Setting:
    """One size and budget of a suite's runs: the rows compared with each other and with the paper."""

    size: str
    budget_flops: float
    tasks: tuple[str, ...]
    scores: dict[str, list[float]]  # model -> per-seed average score (x100)


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
        for model, m in g.groupby("model", sort=False):
            per_seed = []
            for _, s in m.groupby("seed", sort=True):
                if len(set(s["task"])) < len(tasks):
                    continue
                per_seed.append(seed_average(s, glue))
            if per_seed:
                scores[str(model)] = per_seed
        out.append(Setting(str(size), float(budget), tasks, scores))
    return out


def _paper_metric(row: dict[str, Any], glue: bool) -> float:
    value = row.get(paper_metric_column(row["task"])) if glue else None
    return float(row["score"] if value is None or (isinstance(value, float) and math.isnan(value)) else value)


def seed_average(runs: pd.DataFrame, glue: bool) -> float:
    """One seed's score on the paper's scale: its runs' paper metric (GLUE) or score, averaged over tasks, x100."""
    return 100 * statistics.fmean(_paper_metric(r, glue) for r in runs.to_dict("records"))


def paper_table(settings: list[Setting], suite: Suite, models: list[str] | None = None) -> pd.DataFrame:
    """One row per model and setting: the measured score (median over seeds, with min and max) beside the paper's."""
    rows = []
    for st in settings:
        order = [m for m in (models or []) if m in st.scores] + [m for m in st.scores if m not in (models or [])]
        for model in order:
            xs = st.scores[model]
            rows.append({"model": model, "size": st.size, "budget_flops": st.budget_flops,
                         "measured": statistics.median(xs), "min": min(xs), "max": max(xs), "seeds": len(xs),
                         "paper": suite.paper.get(model, math.nan)})
    return pd.DataFrame(rows, columns=["model", "size", "budget_flops", "measured", "min", "max", "seeds", "paper"])


@dataclass(frozen=True)
class PairCheck:
    better: str  # the paper's better model
    worse: str
    ci: GapCI  # measured median(better) - median(worse), bootstrap over seeds

    @property
    def outcome(self) -> str:
        """'agrees' | 'contradicts' (the interval excludes 0) | 'noise' | 'unknown' (one seed)."""
        return {"better": "agrees", "worse": "contradicts", "same": "noise", "unknown": "unknown"}[verdict(self.ci)]


def ordering_checks(st: Setting, suite: Suite) -> list[PairCheck]:
    return [PairCheck(a, b, bootstrap_median_gap(st.scores[a], st.scores[b], level=LEVEL))
            for a, b in suite.ordering if a in st.scores and b in st.scores]


def ordering_sentence(st: Setting, suite: Suite, control: str | None, convention: str = "paper") -> str:
    """Does the measured ordering agree with the paper's, and how sure is it, at this size and budget."""
    where = (f"{suite.name} at {st.size}, {st.budget_flops:.3g} FLOPs ({convention} convention) over "
             f"{', '.join(st.tasks)}; the paper ({suite.reproduces}) measured at {suite.setting or 'its own setting'}")
    checks = ordering_checks(st, suite)
    if not checks:
        return f"{where}: none of the pairs the paper orders ({'; '.join(suite.claims) or 'none'}) has both models here."
    n = len(checks)
    counts = {k: sum(c.outcome == k for c in checks) for k in ("agrees", "contradicts", "noise", "unknown")}
    leaning = sum(c.outcome == "noise" and c.ci.gap > 0 for c in checks)
    parts = [f"{counts['agrees']} agree at the {LEVEL:.0%} level", f"{counts['contradicts']} contradict it",
             f"{counts['noise']} are within seed noise ({leaning} leaning the paper's way)"]
    if counts["unknown"]:
        parts.append(f"{counts['unknown']} cannot be judged (one seed)")
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
    ctrl = st.scores.get(control) if control else None
    if ctrl:
        beaten = [m for m, xs in st.scores.items() if m != control
                  and verdict(bootstrap_median_gap(xs, ctrl, level=LEVEL)) == "better"]
        if not beaten:
            body += (f"; no model beats the no-pretraining control ({control}), so the budget is too small for the "
                     f"objectives to differ and the comparison is no evidence about the paper's claim")
    fewest = min(min(len(st.scores[c.better]), len(st.scores[c.worse])) for c in checks)
    if fewest < MIN_SEEDS:
        body += (f" (indicative only: {fewest} seed{'s' * (fewest != 1)} per model; the paper takes the median of "
                 f"{PAPER_SEEDS})")
    return head + body + "."


def setting_line(suite: Suite) -> str:
    """What the paper's numbers are and where they were measured."""
    note = f" {suite.note}" if suite.note else ""
    return f"{suite.name}: {suite.description}. Paper: {suite.reproduces}; {suite.metric} at {suite.setting or 'see the note'}.{note}"


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
        per_seed = [seed_average(s, glue) for _, s in g.groupby("seed") if set(s["task"]) == tasks]
        near = next((v for k, v in paper.items() if math.isclose(k, float(frac), rel_tol=1e-6)), math.nan)
        rows.append({"model": model, "size": size, "budget_flops": budget, "share": float(frac),
                     "measured": statistics.median(per_seed) if per_seed else math.nan, "seeds": len(per_seed),
                     "paper": near})
    return pd.DataFrame(rows)


def render(table: pd.DataFrame) -> str:
    from tabulate import tabulate

    shown = table.copy()
    for col in ("measured", "min", "max", "paper"):
        if col in shown:
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
    lines = ["", setting_line(suite), render(paper_table(settings, suite, models))]
    curve = curve_table(ft, suite)
    if not curve.empty:
        lines += ["", render(curve)]
    lines += [ordering_sentence(st, suite, control, convention) for st in settings]
    return lines
