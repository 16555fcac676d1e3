"""Markdown: the comparison table, the leaderboard and the claim sentences, for a terminal.

Also the table helpers every text format shares: numbers shown short for people (display_frame),
a table in md/csv/json/html/latex (render), the leaderboard and its caption; `bench run` prints
its comparison with them.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, Iterable

import pandas as pd

from bench.results.tables import COLUMNS, CONVENTIONS, short_error

if TYPE_CHECKING:
    from bench.results.report import Report


def _fmt_num(v: Any, kind: str) -> str:
    if isinstance(v, str):  # a failed row says why where its score would be
        return v
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if kind == "flops":
        return f"{v:.3g}"
    if kind == "count":
        return f"{v / 1e6:.1f}M" if v >= 1e6 else f"{v:,.0f}"
    if kind == "time":
        return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"
    if kind == "score":
        return f"{v:.4f}"
    return str(v)


DISPLAY_KINDS = {"budget_flops": "flops", "pretrain_flops": "flops", "pretrain_flops_paper": "flops",
                 "pretrain_flops_executed": "flops", "pretrain_wall_s": "time",
                 "finetune_wall_s": "time", "tokens_per_s": "time", "score_median": "score", "score_min": "score",
                 "score_max": "score", "params": "count", "score": "score", "glue_avg": "score",
                 "avg_score": "score", "gap": "score", "ci_low": "score", "ci_high": "score",
                 "p_a_ahead": "score",
                 **{f"{w}speedup_{side}{end}": "ratio" for w in ("", "wall_") for side in "ab"
                    for end in ("", "_low", "_high")},
                 **{f"flops_ratio_{c}": "ratio" for c in CONVENTIONS}}


def display_frame(df: pd.DataFrame, *, score_cols: Iterable[str] = ()) -> pd.DataFrame:
    """Numbers as short strings for people: FLOPs in 3 significant digits, scores in 4 decimals."""
    shown = df.copy().astype(object)
    kinds = dict(DISPLAY_KINDS, **{c: "score" for c in score_cols})
    for col in shown.columns:
        kind = kinds.get(col)
        if kind == "ratio":
            shown[col] = shown[col].map(lambda v: "–" if v is None or v != v else f"{v:.2f}x")
        elif kind:
            shown[col] = shown[col].map(lambda v, k=kind: _fmt_num(v, k))
    return shown


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain Python values (NaN -> None), so json.dumps writes exact, valid JSON."""
    out = []
    for rec in df.to_dict("records"):
        out.append({k: (None if isinstance(v, float) and math.isnan(v) else
                        v.item() if hasattr(v, "item") else v) for k, v in rec.items()})
    return out


def _table(shown: pd.DataFrame, fmt: str) -> str:
    if fmt == "html":
        return shown.to_html(index=False, escape=True, border=0, classes="table")
    if fmt == "latex":
        return shown.to_latex(index=False, escape=True)
    from tabulate import tabulate

    return tabulate(shown.values.tolist(), headers=list(shown.columns), tablefmt="github" if fmt == "md" else fmt,
                    disable_numparse=True)


def render(df: pd.DataFrame, fmt: str = "md") -> str:
    """The comparison table: csv and json keep full precision (they round-trip); md/html/latex are for people."""
    df = df[COLUMNS] if set(COLUMNS) <= set(df.columns) else df
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "json":
        return json.dumps(_records(df), indent=2)
    return _table(display_frame(df), fmt)


def render_leaderboard(board: pd.DataFrame, fmt: str = "md", tasks: Iterable[str] = ()) -> str:
    return _table(display_frame(board, score_cols=tasks), fmt)


def leaderboard_caption(board: pd.DataFrame) -> str:
    col = next((c for c in ("glue_avg", "avg_score", "score") if c in board.columns), "score")
    what = {"glue_avg": "the GLUE score as the ELECTRA paper computes it (mean over tasks of the median dev "
                        "score: Matthews for CoLA, Spearman for STS-B, accuracy for the rest; WNLI left out)",
            "avg_score": "the mean over tasks of each task's median dev score",
            "score": "the median dev score over fine-tuning seeds"}[col]
    return (f"Ranked by {what} at the full pretraining budget; params = encoder parameters; "
            f"seeds = fine-tuning seeds per task.")


def report_tasks(report: Report) -> list[str]:
    """The tasks in the report's comparison, sorted: the leaderboard's per-task columns."""
    return sorted(report.comparison["task"].unique()) if not report.comparison.empty else []


def claim_lines(report: Report) -> list[str]:
    """The claim sentences, or the one sentence saying why there are none."""
    lines = report.lines or ["No pair of models to compare (a claim needs two models, or a model and the "
                             "control, on the same task and size)."]
    if report.comparison.empty:
        lines = ["No finished fine-tuning runs match: run `bench run` first, or loosen the filters."]
    return lines


def render_report(report: Report, *, images: list[Any] | None = None) -> str:
    """Comparison table, leaderboard, claims and the runs without a result; `images` are not shown."""
    tasks, lines = report_tasks(report), claim_lines(report)
    parts = [render(report.comparison, "md"), "", "## Leaderboard", "", leaderboard_caption(report.leaderboard), "",
             render_leaderboard(report.leaderboard, "md", tasks), "", "## Claims at matched compute", ""]
    parts += [f"- {s}" for s in lines]
    failed = [r for r in report.runs if r["status"] == "failed"]
    if failed:
        parts += ["", "## Runs without a result", ""]
        parts += [f"- {r['kind']} {r['model']} ({r['size']}{', ' + r['task'] if r['task'] else ''}"
                  f"{'' if r['seed'] is None else ', seed ' + str(r['seed'])}), run {r['id']}, attempt "
                  f"{r['attempts']}: {short_error(r['error'])}" for r in failed]
    return "\n".join(parts) + "\n"

