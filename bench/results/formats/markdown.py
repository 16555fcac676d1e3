"""Markdown: the comparison table, the leaderboard and the claim sentences, for a terminal.

Also the table helpers every text format shares: numbers shown short for people (display_rows),
a table in md/csv/json/html/latex (render), the leaderboard and its caption; `bench run` prints
its comparison with them. Tables come as tables.Rows or DataFrames; markdown needs no pandas.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, Iterable

from bench.results.tables import COLUMNS, CONVENTIONS, Rows, Table, as_rows, short_error

if TYPE_CHECKING:
    import pandas as pd

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
                 "p": "score", "p_holm": "score", "min_detectable_gap": "score",
                 **{f"{w}speedup_{side}{end}": "ratio" for w in ("", "wall_") for side in "ab"
                    for end in ("", "_low", "_high")},
                 **{f"flops_ratio_{c}": "ratio" for c in CONVENTIONS}}


def _fmt_ratio(v: Any, kind: str) -> str:
    return "–" if v is None or v != v else f"{v:.2f}x"


def display_rows(table: Table, *, score_cols: Iterable[str] = ()) -> Rows:
    """Numbers as short strings for people: FLOPs in 3 significant digits, scores in 4 decimals.
    A cell missing from a row is NaN, as in a DataFrame."""
    rows = as_rows(table)
    kinds = dict(DISPLAY_KINDS, **{c: "score" for c in score_cols})
    shown = {c: (_fmt_ratio if kinds[c] == "ratio" else _fmt_num, kinds[c]) for c in rows.columns if kinds.get(c)}
    out = []
    for r in rows.records:
        rec = {}
        for c in rows.columns:
            v = r.get(c, math.nan)
            rec[c] = shown[c][0](v, shown[c][1]) if c in shown else v
        out.append(rec)
    return Rows(out, rows.columns)


def display_frame(table: Table, *, score_cols: Iterable[str] = ()) -> pd.DataFrame:
    """display_rows as a DataFrame of Python objects (what to_html and to_latex print)."""
    import pandas as pd

    shown = display_rows(table, score_cols=score_cols)
    return pd.DataFrame(shown.records, columns=shown.columns, dtype=object)


def _plain(rows: Rows) -> list[list[Any]]:
    """Each row's cells in column order as plain Python values, missing ones (NaN, None, absent) None."""
    out = []
    for r in rows.records:
        cells = []
        for c in rows.columns:
            v = r.get(c)
            v = v.item() if hasattr(v, "item") else v  # a numpy scalar
            cells.append(None if v is None or (isinstance(v, float) and math.isnan(v)) else v)
        out.append(cells)
    return out


def _csv(rows: Rows) -> str:
    """As DataFrame.to_csv(index=False) writes it: full precision (repr), missing values empty, '\n' lines."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(rows.columns)
    writer.writerows(_plain(rows))
    return buf.getvalue()


def _table(table: Table, fmt: str, score_cols: Iterable[str] = ()) -> str:
    if fmt in ("html", "latex"):
        shown = display_frame(table, score_cols=score_cols)
        if fmt == "html":
            return shown.to_html(index=False, escape=True, border=0, classes="table")
        return shown.to_latex(index=False, escape=True)
    from tabulate import tabulate

    rows = display_rows(table, score_cols=score_cols)
    return tabulate([[r[c] for c in rows.columns] for r in rows.records], headers=rows.columns,
                    tablefmt="github" if fmt == "md" else fmt, disable_numparse=True)


PAPER = "paper"  # a suite's published number per model (bench report --suite), after the comparison's COLUMNS


def with_paper(table: Table, paper: dict[str, float] | None) -> Rows:
    """The comparison rows with a `paper` column: the suite's published number for each row's model
    (missing, e.g. the control, where the suite has none). `paper=None`: the rows as they are."""
    rows = as_rows(table)
    if paper is None:
        return rows
    records = [{**r, PAPER: paper.get(r.get("model"), math.nan)} for r in rows.records]
    return Rows(records, [*[c for c in rows.columns if c != PAPER], PAPER], rows.attrs)


def render(table: Table, fmt: str = "md") -> str:
    """The comparison table: csv and json keep full precision (they round-trip); md/html/latex are for people."""
    rows = as_rows(table)
    if set(COLUMNS) <= set(rows.columns):
        rows = Rows(rows.records, COLUMNS + [PAPER] * (PAPER in rows.columns), rows.attrs)
    if fmt == "csv":
        return _csv(rows)
    if fmt == "json":  # exact, valid JSON: NaN written as null
        return json.dumps([dict(zip(rows.columns, cells)) for cells in _plain(rows)], indent=2)
    return _table(rows, fmt)


def render_leaderboard(board: Table, fmt: str = "md", tasks: Iterable[str] = ()) -> str:
    return _table(board, fmt, score_cols=tasks)


def leaderboard_caption(board: Table) -> str:
    col = next((c for c in ("glue_avg", "avg_score", "score") if c in board.columns), "score")
    what = {"glue_avg": "the GLUE score as the ELECTRA paper computes it (mean over tasks of the median dev "
                        "score: Matthews for CoLA, Spearman for STS-B, accuracy for the rest; WNLI left out)",
            "avg_score": "the mean over tasks of each task's median dev score",
            "score": "the median dev score over fine-tuning seeds"}[col]
    return (f"Ranked by {what} at the full pretraining budget; params = encoder parameters; "
            f"seeds = fine-tuning seeds per task.")


def report_tasks(report: Report) -> list[str]:
    """The tasks in the report's comparison, sorted: the leaderboard's per-task columns."""
    return sorted({r["task"] for r in report.comparison_rows.records})


def claim_lines(report: Report) -> list[str]:
    """The claim sentences, or the one sentence saying why there are none."""
    lines = report.lines or ["No pair of models to compare (a claim needs two models, or a model and the "
                             "control, on the same task and size)."]
    if report.comparison_rows.empty:
        lines = ["No finished fine-tuning runs match: run `bench run` first, or loosen the filters."]
    return lines


def render_report(report: Report, *, images: list[Any] | None = None) -> str:
    """Comparison table, leaderboard, claims and the runs without a result; `images` are not shown."""
    tasks, lines = report_tasks(report), claim_lines(report)
    board = report.leaderboard_rows
    parts = [render(report.comparison_rows, "md"), "", "## Leaderboard", "", leaderboard_caption(board), "",
             render_leaderboard(board, "md", tasks), "", "## Claims at matched compute", ""]
    parts += [f"- {s}" for s in lines]
    failed = [r for r in report.runs if r["status"] == "failed"]
    if failed:
        parts += ["", "## Runs without a result", ""]
        parts += [f"- {r['kind']} {r['model']} ({r['size']}{', ' + r['task'] if r['task'] else ''}"
                  f"{'' if r['seed'] is None else ', seed ' + str(r['seed'])}), run {r['id']}, attempt "
                  f"{r['attempts']}: {short_error(r['error'])}" for r in failed]
    return "\n".join(parts) + "\n"

