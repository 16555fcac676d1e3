"""One self-contained HTML file: claims, leaderboard, plots (as data: URIs), tables and provenance.

No scripts, fonts, stylesheets or images are fetched: the file opens from disk in any browser,
without a server, and can be mailed or archived as it is.
"""

from __future__ import annotations

import base64
import html
import json
import re
from typing import TYPE_CHECKING, Any

import pandas as pd

from bench.results.claims import LEVEL, claims_frame
from bench.results.formats.markdown import display_frame, leaderboard_caption, render, render_leaderboard, report_tasks

if TYPE_CHECKING:
    from bench.results.claims import PairClaim
    from bench.results.plots import PlotImage
    from bench.results.report import Report

CSS = """
:root { --fg: #1d232a; --muted: #5b6670; --line: #d9dee3; --bg: #ffffff; --soft: #f5f7f9;
        --good: #1a7f37; --bad: #b42318; --same: #8a6d00; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       color: var(--fg); background: var(--bg); }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 64px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 16px; margin: 20px 0 8px; }
p.meta, p.caption, figcaption { color: var(--muted); font-size: 13px; }
nav a { margin-right: 14px; color: #0b5cad; text-decoration: none; font-size: 14px; }
ul.claims { padding-left: 0; list-style: none; }
ul.claims li { margin: 8px 0; padding: 8px 12px; border-left: 4px solid var(--line); background: var(--soft); }
ul.claims li.better { border-color: var(--good); }
ul.claims li.worse { border-color: var(--bad); }
ul.claims li.same, ul.claims li.unknown, ul.claims li.warning { border-color: var(--same); }
.table-wrap { overflow-x: auto; }
table.table { border-collapse: collapse; font-size: 12px; margin: 6px 0 12px; max-width: 100%; }
table.table th, table.table td { padding: 4px 5px; border-bottom: 1px solid var(--line); text-align: right;
                                 vertical-align: top; }
table.table th { font-size: 11px; vertical-align: bottom; }
table.table th { background: var(--soft); }
table.table td:nth-child(-n+3), table.table th:nth-child(-n+3) { text-align: left; }
figure { margin: 16px 0 28px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
details { margin: 6px 0; }
summary { cursor: pointer; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; }
pre { background: var(--soft); padding: 10px; overflow-x: auto; font-size: 12px; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
"""

PROVENANCE_COLUMNS = ["id", "kind", "model", "task", "size", "seed", "fraction", "score", "status", "attempts",
                      "data", "code_version", "git_sha", "device", "finished_at"]


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _table(df: pd.DataFrame) -> str:
    if df.empty:
        return "<p class='caption'>(no rows)</p>"
    table = df.to_html(index=False, escape=True, border=0, classes="table", na_rep="–")
    return f"<div class='table-wrap'>{_breakable(table)}</div>"


def _breakable(table_html: str) -> str:
    """Column names may break after an underscore (`pretrain_<wbr>flops_<wbr>executed`), so wide tables fit the page."""
    return re.sub(r"(<th[^>]*>)([^<]*)(</th>)", lambda m: m.group(1) + m.group(2).replace("_", "_<wbr>") + m.group(3),
                  table_html)


def _claims_list(report: Report) -> str:
    if report.comparison.empty:
        return "<p>No finished fine-tuning runs match: run <code>bench run</code> first, or loosen the filters.</p>"
    items = [f"<li class='{_e(c.verdict)}'>{_e(c.sentence)}</li>" for c in report.claims]
    items += [f"<li class='warning'>{_e(s)}</li>" for s in report.lines[len(report.claims):]]
    if not items:
        items = ["<li>No pair of models to compare: a claim needs two models (or a model and the control) on the same "
                 "task and size.</li>"]
    return "<ul class='claims'>" + "".join(items) + "</ul>"


def _speedup_cell(rec: dict[str, Any], wall: str, side: str) -> str:
    """'4.00x (2.38x to 5.28x)', 'withheld' (the claim sentence says why) or '–' (no curves / no wall-clock)."""
    value, low, high = (rec.get(f"{wall}speedup_{side}{end}") for end in ("", "_low", "_high"))
    if rec.get(f"speedup_{side}") is None or value is None or value != value:
        return "–"
    if rec.get(f"speedup_{side}_withheld"):
        return "withheld"
    return f"{'never' if value == 0 else format(value, '.2f') + 'x'} ({low:.2f}x to {high:.2f}x)"


def claims_display(claims: list[PairClaim]) -> pd.DataFrame:
    """The claims frame for people: each speed-up with its interval in one cell, withheld ones marked so."""
    frame = claims_frame(claims)
    recs = frame.to_dict("records")
    speed = [f"{w}speedup_{side}" for side in "ab" for w in ("", "wall_")]
    extra = [c for c in frame.columns if c.startswith(("speedup_", "wall_speedup_")) and c not in speed]
    shown = display_frame(frame.drop(columns=extra))
    for col in speed:
        wall, side = ("wall_", col[-1]) if col.startswith("wall_") else ("", col[-1])
        shown[col] = [_speedup_cell(r, wall, side) for r in recs]
    return shown


CLAIM_TEST_COLUMNS = ("about", "gap", "ci_low", "ci_high", "p", "p_holm", "family", "min_detectable_gap", "verdict",
                      "left_out")  # the claims table's first half; the runs, FLOPs ratios and speed-ups its second


def _claims_table(claims: list[PairClaim]) -> str:
    if not claims:
        return ""
    note = (f"about = what the claim compares: objectives (at least 2 pretraining runs a side: the gap of mean "
            f"per-run median scores) or two checkpoints (one pretraining run on a side: the mean gap over fine-tuning "
            f"seeds); ci = {LEVEL:.0%} Welch t interval over those units; p = its two-sided p-value, p_holm = "
            f"Holm-adjusted over the report's family of comparisons (a verdict needs p_holm < {1 - LEVEL:.2g}); "
            f"min_detectable_gap = the smallest gap this design finds with 80% power after that correction; "
            f"left_out = fine-tuning runs that did not learn the task, kept out of the claim; "
            f"flops_ratio_paper / _executed = model_a's pretraining FLOPs / model_b's in each convention; "
            f"speedup_a = compute model_b spent on its best score / compute model_a needs to match it (from the "
            f"curves; 0x = never within its budget), wall_speedup_a the same in pretraining wall-clock, each with its "
            f"{LEVEL:.0%} bootstrap interval over pretraining runs; 'withheld': not claimed, the claim sentence above "
            f"says why.")
    # one table of 25 columns is wider than the page: the test, then the design and compute behind it
    shown = claims_display(claims)
    pair = [c for c in ("task", "size", "budget_flops", "model_a", "model_b") if c in shown.columns]
    test = [c for c in shown.columns if c in CLAIM_TEST_COLUMNS]
    rest = [c for c in shown.columns if c not in pair and c not in test]
    return (f"<h3>The test</h3>{_table(shown[pair + test])}<h3>The design and the compute</h3>"
            f"{_table(shown[pair + rest])}<p class='caption'>{_e(note)}</p>")


def _figures(images: list[PlotImage]) -> str:
    if not images:
        return "<p class='caption'>No plots: no finished runs in this report.</p>"
    out = []
    for img in images:
        out.append(f"<figure id='fig-{_e(img.name)}'><img src='{data_uri(img.png, 'image/png')}' "
                   f"alt='{_e(img.title)}'><figcaption><b>{_e(img.title)}.</b> {_e(img.caption)}</figcaption>"
                   f"</figure>")
    return "".join(out)


def _run_rows(runs: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for r in runs:
        env = r.get("environment") or {}
        score = (r.get("metrics") or {}).get("score")
        rows.append({"id": r["id"], "kind": r["kind"], "model": r["model"], "task": r["task"] or "", "size": r["size"],
                     "seed": "" if r["seed"] is None else r["seed"],
                     "fraction": r["spec"].get("fraction", "") if r["kind"] == "finetune" else "",
                     "score": "" if score is None else f"{score:.4f}", "status": r["status"],
                     "attempts": r.get("attempts", 1), "data": _data_identity(r["spec"]),
                     "code_version": r["code_version"], "git_sha": _short_sha(r["git_sha"]),
                     "device": env.get("device", ""), "finished_at": r["finished_at"] or ""})
    return pd.DataFrame(rows, columns=PROVENANCE_COLUMNS)


def _data_identity(spec: dict[str, Any]) -> str:
    """The data a run ran on, short: prepared corpus + vocabulary, task files, or a checkpoint."""
    ident = spec.get("identity") or {}
    parts = [f"{k.split('_')[0]} {str(v)[:8]}" for k, v in sorted(ident.items())]
    if spec.get("task_data"):
        parts.append(f"task {spec['task_data'][:8]}")
    return ", ".join(parts)


def _short_sha(sha: str | None) -> str:
    """abcdef123456...-dirty -> abcdef123456-dirty: the table stays narrow, the full sha is in each run's details."""
    if not sha:
        return ""
    return sha[:12] + ("-dirty" if sha.endswith("-dirty") else "")


def _json_block(obj: Any) -> str:
    return f"<pre>{_e(json.dumps(obj, indent=2, sort_keys=True, default=str))}</pre>"


def _provenance(report: Report) -> str:
    runs = report.runs
    if not runs:
        return "<p class='caption'>No runs.</p>"
    parts = [_table(_run_rows(runs))]
    pretrain = [r for r in runs if r["kind"] == "pretrain"]
    finetune = [r for r in runs if r["kind"] == "finetune"]
    parts.append("<h3>Pretraining runs: configuration and environment</h3>")
    for r in pretrain:
        parts.append(f"<details><summary>{_e(r['id'])}: {_e(r['model'])} / {_e(r['size'])} "
                     f"({_e(r['status'])})</summary><h4>config</h4>{_json_block(r['spec'])}"
                     f"<h4>environment (code version, packages, device)</h4>{_json_block(r['environment'])}"
                     + (f"<h4>error</h4><pre>{_e(r['error'])}</pre>" if r.get("error") else "") + "</details>")
    parts.append("<h3>Fine-tuning configurations</h3>")
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in finetune:  # seeds and checkpoints of one configuration share everything else
        spec = {k: v for k, v in r["spec"].items() if k not in ("seed", "fraction")}
        groups.setdefault(json.dumps(spec, sort_keys=True, default=str), []).append(r)
    for key, rs in groups.items():
        spec = json.loads(key)
        seeds = sorted({r["seed"] for r in rs if r["seed"] is not None})
        fractions = sorted({r["spec"].get("fraction", 1.0) for r in rs})
        envs = {json.dumps(r["environment"], sort_keys=True) for r in rs}
        failed = [r for r in rs if r["status"] == "failed"]
        parts.append(
            f"<details><summary>{_e(spec.get('model'))} / {_e(spec.get('task'))} / {_e(spec.get('size'))}: "
            f"{len(rs)} runs, seeds {_e(', '.join(map(str, seeds)))}, checkpoints "
            f"{_e(', '.join(f'{f:g}' for f in fractions))}" + (f", {len(failed)} failed" if failed else "")
            + f"</summary><h4>config</h4>{_json_block(spec)}"
            + "".join(f"<h4>environment</h4>{_json_block(json.loads(e))}" for e in sorted(envs))
            + "".join(f"<h4>error in {_e(r['id'])}</h4><pre>{_e(r['error'])}</pre>" for r in failed)
            + "</details>")
    return "".join(parts)


def render_html(report: Report, images: list[PlotImage]) -> str:
    """The whole report as one HTML document; every image is an embedded data: URI."""
    tasks = report_tasks(report)
    n_pre = sum(r["kind"] == "pretrain" and r["status"] == "done" for r in report.runs)
    n_ft = sum(r["kind"] == "finetune" and r["status"] == "done" for r in report.runs)
    n_failed = sum(r["status"] == "failed" for r in report.runs)
    filters = ", ".join(f"{k}={'/'.join(map(str, v))}" for k, v in report.filters.items() if v) or "none"
    meta = (f"Generated {report.generated_at} from <code>{_e(report.source)}</code>: {n_pre} pretraining and {n_ft} "
            f"fine-tuning runs" + (f", {n_failed} failed" if n_failed else "") + f"; filters: {_e(filters)}; "
            f"FLOPs in the {_e(report.convention)} convention; control: {_e(report.control or 'none')}.")
    board = report.leaderboard
    sections = [
        ("claims", "Does the efficiency claim hold?",
         "<p class='caption'>The paper's claim: at equal pretraining compute, ELECTRA's replaced-token detection "
         "gives a better encoder than BERT's masked language modelling. Each pair of models on the same task and size "
         f"is compared at the same FLOP budget, with a {LEVEL:.0%} bootstrap interval over fine-tuning seeds.</p>"
         + _claims_list(report) + _claims_table(report.claims)),
        ("leaderboard", "Leaderboard",
         f"<p class='caption'>{_e(leaderboard_caption(board))}</p>"
         + _wrap(render_leaderboard(board, "html", tasks), board.empty)),
        ("plots", "Plots", _figures(images)),
        ("comparison", "Comparison table",
         "<p class='caption'>One row per model, size, task and pretraining-FLOPs point; scores are the median, min "
         "and max over fine-tuning seeds.</p>" + _wrap(render(report.comparison, "html"), report.comparison.empty)),
        ("provenance", "Provenance", _provenance(report)),
    ]
    nav = "".join(f"<a href='#{sid}'>{_e(title)}</a>" for sid, title, _ in sections)
    body = "".join(f"<section id='{sid}'><h2>{_e(title)}</h2>{content}</section>" for sid, title, content in sections)
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>electra-bench report</title><style>{CSS}</style></head><body><main>"
            f"<h1>electra-bench report</h1><p class='meta'>{meta}</p><nav>{nav}</nav>{body}"
            "</main></body></html>\n")


def _wrap(table_html: str, empty: bool) -> str:
    return "<p class='caption'>(no rows)</p>" if empty else f"<div class='table-wrap'>{_breakable(table_html)}</div>"


def render_report(report: Report, *, images: list[PlotImage] | None = None) -> str:
    """The format's entry point: the HTML document with `images` (plots.report_plots) embedded."""
    return render_html(report, images or [])
