"""Tables read from the store: one row per pretraining run, per fine-tuning run, and the comparison.

The comparison table has one row per model, size, task and pretraining-FLOPs point (curve
points included); the leaderboard one row per model configuration. Nothing here trains or
recomputes a run.

FLOPs in two conventions. `pretrain_flops` is counted in the convention the budget was matched
in (`budget_convention`: what "matched FLOPs" means for that row), and the table always shows
both conventions beside it as well, `pretrain_flops_paper` and `pretrain_flops_executed`, so one
of the two repeats `pretrain_flops` and neither is ever "the other one" by position. A curve
point's FLOPs in each convention are its step times the run's per-step cost in that convention
(the `flops_per_step_*` metrics; stores without them scale the run's totals by steps).

Tables are computed as plain rows (`Rows`) and become pandas DataFrames only when asked
(`Rows.frame()`): `bench report` renders markdown without importing pandas, which alone took
half a second of every report.

Wall-clock per point (`pretrain_wall_s`) is the checkpoint's own time where the checkpoint series
records it, else the time at that step interpolated from the timestamps of the logged pretraining
series (the loop stamps every logging step), else the run's wall time pro rata of steps.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import statistics
from typing import TYPE_CHECKING, Any, Iterable, Union

from bench.results.learning import reason as not_learned_reason
from bench.results.store import Store, canonical_json

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ["model", "size", "task", "finetune", "budget_flops", "pretrain_steps", "pretrain_flops", "pretrain_flops_paper",
           "pretrain_flops_executed", "pretrain_wall_s", "tokens_per_s", "finetune_wall_s", "score_median", "score_min",
           "score_max", "pretrain_runs", "pretrain_seeds", "seeds", "not_learned", "also"]
SETTINGS = "settings"  # a comparison row's fine-tuning settings (canonical JSON): in the frames, not the printed table
CONVENTIONS = ("paper", "executed")  # pretrain_flops_<convention>: both always shown beside the budget's
GLUE_TASKS = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")
GLUE_PAPER = "glue_paper_scores"  # df.attrs key: same key -> median of the metric the paper's GLUE score uses
# The ELECTRA paper's GLUE score: Spearman for STS-B, Matthews for CoLA, accuracy for the rest
# (so MRPC and QQP count accuracy, not their F1 headline), averaged without WNLI.
PAPER_GLUE_METRIC = {"cola": "matthews_correlation", "stsb": "spearmanr", "mrpc": "accuracy", "qqp": "accuracy"}
GLUE_AVERAGE_EXCLUDES = ("wnli",)
SEED_SCORES = "seed_scores"  # df.attrs key: (model, size, task, budget, pretrain_flops) -> per-seed scores
RUN_SCORES = "run_scores"  # df.attrs key: the same key -> per pretraining run, the scores of its runs that learned


class Shared(dict):
    """A dict in df.attrs that derived frames share rather than copy: pandas deep-copies attrs on every operation
    (a filter, a row, to_dict), which over a 1,000-run store took most of `bench report`'s time. Never mutated
    after the frame is built."""

    def __deepcopy__(self, memo: dict[int, Any]) -> Shared:
        return self


class Rows:
    """A table as plain rows (dicts) and its column order: what the report computes with, pandas-free.

    `frame()` is the same table as a DataFrame (missing values NaN, `attrs` carried over), for the API,
    the plots and the formats that render through pandas. A column absent from a row reads as NaN.
    """

    def __init__(self, records: list[dict[str, Any]], columns: Iterable[str] | None = None,
                 attrs: dict[str, Any] | None = None) -> None:
        self.records = records
        self.columns = list(columns) if columns is not None else list(dict.fromkeys(k for r in records for k in r))
        self.attrs: dict[str, Any] = attrs if attrs is not None else {}

    @property
    def empty(self) -> bool:
        return not self.records

    def __len__(self) -> int:
        return len(self.records)

    def with_records(self, records: list[dict[str, Any]]) -> Rows:
        """The same columns and attrs over other records (a filter's result)."""
        return Rows(records, self.columns, self.attrs)

    def frame(self) -> pd.DataFrame:
        import pandas as pd

        df = pd.DataFrame(self.records, columns=self.columns) if self.columns else pd.DataFrame(self.records)
        df.attrs.update(self.attrs)
        return df


Table = Union[Rows, "pd.DataFrame"]


def as_rows(table: Table) -> Rows:
    """Rows of either kind of table; a DataFrame's rows as plain Python values, its attrs shared."""
    if isinstance(table, Rows):
        return table
    return Rows(table.to_dict("records"), list(table.columns), table.attrs)


def is_present(values: tuple[Any, ...]) -> bool:
    """No None or NaN among `values` (pandas' notna for each): a missing key matches nothing."""
    return all(v is not None and v == v for v in values)


def paper_metric_column(task: str) -> str:
    """The fine-tuning frame's column holding the metric the paper's GLUE score uses for `task`."""
    return f"metric_{PAPER_GLUE_METRIC.get(task, 'accuracy')}"


# --- frames straight from the store ---------------------------------------------------------------


def pretrain_rows(store: Store) -> Rows:
    """One row per pretraining run: its spec, final metrics and checkpoint points (fraction -> step, FLOPs, wall)."""
    rows = []
    for r in store.runs(kind="pretrain"):
        m = store.final_metrics(r["id"])
        spec = r["spec"]
        conv = spec.get("convention", "paper")
        ckpts = store.series(r["id"], "checkpoint")
        walls = _checkpoint_walls(store, r["id"], ckpts, m)
        points = {p.value: (p.step, p.flops, w) for p, w in zip(ckpts, walls)}  # fraction -> (step, FLOPs, wall)
        rows.append({
            "pretrain_id": r["id"], "pretrain_seed": spec.get("seed", 0), "pretrain_config": _config_key(r),
            "model": r["model"], "size": r["size"], "budget_flops": r["budget"],
            "budget_text": spec.get("budget", {}).get("text"), "convention": conv,
            "steps": m.get("steps", 0), "flops": m.get(f"flops_{conv}", 0.0),
            "flops_paper": m.get("flops_paper", 0.0), "flops_executed": m.get("flops_executed", 0.0),
            "flops_per_step_paper": m.get("flops_per_step_paper", math.nan),
            "flops_per_step_executed": m.get("flops_per_step_executed", math.nan),
            "wall_s": m.get("wall_s", 0.0), "tokens_per_s": m.get("tokens_per_s", 0.0),
            "params": m.get("params", math.nan), "encoder_params": m.get("encoder_params", math.nan),
            "pretrains": bool(spec.get("pretrains", True)), "external": spec.get("external"),
            "points": points, "code_version": r["code_version"], "git_sha": r["git_sha"],
            "device": r["environment"].get("device"), "started_at": r["started_at"],
            "machine": machine_label(r["environment"]),
        })
    return Rows(rows)


def _config_key(run: dict[str, Any]) -> str:
    """A pretraining run's configuration without its seed: the runs that replicate one another share it."""
    spec = {k: v for k, v in run["spec"].items() if k != "seed"}
    return hashlib.sha256((canonical_json(spec) + run["code_version"]).encode()).hexdigest()[:12]


def pretrain_frame(store: Store) -> pd.DataFrame:
    return pretrain_rows(store).frame()


def wall_at_steps(known: Iterable[tuple[float, float]], steps: Iterable[float]) -> list[float]:
    """Seconds at each of `steps`, linear between the known (step, seconds) points; the run starts at (0, 0)."""
    pts = dict([(0.0, 0.0)] + [(float(k), float(w)) for k, w in known])  # a repeated step keeps its last time
    xs = sorted(pts)
    return [_interp(float(x), xs, [pts[x] for x in xs]) for x in steps]


def _interp(x: float, xs: list[float], ys: list[float]) -> float:
    """np.interp at one point: linear between neighbours, the end values outside (numpy-free)."""
    if x <= xs[0]:
        return float(ys[0])
    if x >= xs[-1]:
        return float(ys[-1])
    i = bisect.bisect_right(xs, x)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return float((y1 - y0) / (x1 - x0) * (x - x0) + y0)  # numpy's own order of operations: the same float


def _checkpoint_walls(store: Store, run_id: str, ckpts: list[Any], m: dict[str, float]) -> list[float]:
    """Each checkpoint's pretraining wall-clock: as recorded with the checkpoint, else interpolated from the
    logged series' timestamps and the run's end (steps, wall_s)."""
    if all(p.wall_s is not None for p in ckpts):
        return [float(p.wall_s) for p in ckpts]
    known = [(x.step, x.wall_s) for x in store.series(run_id, "loss") if x.wall_s is not None]
    if m.get("steps") and m.get("wall_s"):
        known.append((m["steps"], m["wall_s"]))
    walls = wall_at_steps(known, [p.step for p in ckpts])
    return [float(p.wall_s) if p.wall_s is not None else w for p, w in zip(ckpts, walls)]


def flops_in(parent: dict[str, Any], step: float, convention: str) -> float:
    """A point's pretraining FLOPs in `convention`: step x the run's per-step cost, else its total pro rata."""
    per = parent.get(f"flops_per_step_{convention}")
    if per is not None and per == per:
        return float(step) * float(per)
    total, steps = float(parent.get(f"flops_{convention}") or 0.0), parent.get("steps") or 0
    return total * float(step) / float(steps) if steps else total


def finetune_rows(store: Store, pre: Rows | None = None, finals: dict[str, dict[str, float]] | None = None) -> Rows:
    """One row per finished fine-tuning run (one seed). `pre` (pretrain_rows) and `finals` (all_final_metrics):
    the store's, when the caller has read them already."""
    parents = {r["pretrain_id"]: r for r in (pre if pre is not None else pretrain_rows(store)).records}
    if finals is None:
        finals = store.all_final_metrics()  # one query, not one per run
    rows = []
    for r in store.runs(kind="finetune"):
        m = finals.get(r["id"], {})
        parent = parents.get(r["parent_id"], {})
        frac = r["spec"].get("fraction", 1.0)
        step, flops, wall = (parent.get("points") or {}).get(frac, (None, None, None))
        if step is None:  # no checkpoint series (controls, external checkpoints): the run's totals
            step, flops, wall = parent.get("steps", 0), parent.get("flops", 0.0), parent.get("wall_s", 0.0)
        row = {"run_id": r["id"], "pretrain_id": r["parent_id"], "pretrain_seed": parent.get("pretrain_seed", 0),
               "pretrain_config": parent.get("pretrain_config", r["parent_id"]), "model": r["model"],
               "size": r["size"], "task": r["task"], "seed": r["seed"], "fraction": frac,
               "budget_flops": parent.get("budget_flops", 0.0), "pretrain_steps": step, "pretrain_flops": flops,
               **{f"pretrain_flops_{c}": flops_in(parent, step, c) if parent else 0.0 for c in CONVENTIONS},
               "pretrain_wall_s": wall,
               "tokens_per_s": parent.get("tokens_per_s", 0.0), "score": m.get("score"),
               "finetune_wall_s": m.get("train_wall_s", 0.0) + m.get("eval_wall_s", 0.0),
               "train_examples": m.get("train_examples"),  # what it trained on: the cap, or fewer
               "code_version": r["code_version"],
               # runs with other fine-tuning settings (e.g. --epochs) are other rows, never extra seeds
               "settings": canonical_json(r["spec"].get("settings", {})),
               # runs on other task data (a file edited since) are other rows too
               "task_data": r["spec"].get("task_data", ""),
               # and runs of another version of a plug-in task's code
               "task_code": r["spec"].get("code", ""),
               # a run that did not learn (bench.results.learning): kept, shown, and left out of every claim
               "not_learned": not_learned_reason(m)}
        row.update({k: v for k, v in m.items() if k.startswith("metric_")})
        rows.append(row)
    return Rows(rows)


def finetune_frame(store: Store) -> pd.DataFrame:
    """One row per finished fine-tuning run (one seed)."""
    return finetune_rows(store).frame()


def _near(value: float, wanted: list[float]) -> bool:
    return any(abs(value - w) <= 1e-6 * max(abs(w), 1) for w in wanted)


def _at_budget(budget: float, wanted: list[float]) -> bool:
    """A no-pretraining control (no budget) matches every budget: it is the baseline of each comparison."""
    return not budget or _near(budget, wanted)


def number(v: Any) -> float:
    """A table cell as a float, NaN where it is missing (None), as in a DataFrame's numeric column."""
    return math.nan if v is None else float(v)


def filter_finetune(table: Table, *, run_ids: Iterable[str] | None = None, pretrain_ids: Iterable[str] | None = None,
                    tasks: Iterable[str] | None = None, models: Iterable[str] | None = None,
                    sizes: Iterable[str] | None = None, budgets: Iterable[float] | None = None,
                    fractions: Iterable[float] | None = None) -> Rows:
    """The report's filters. A budget filter keeps runs that spent no pretraining FLOPs (the control)."""
    ft = as_rows(table)
    rows = ft.records
    for col, wanted in (("run_id", run_ids), ("pretrain_id", pretrain_ids), ("task", tasks), ("model", models),
                        ("size", sizes), ("fraction", fractions)):
        if wanted is not None:
            keep = set(wanted)
            rows = [r for r in rows if r.get(col) in keep]
    if budgets is not None:
        wanted_budgets = [float(b) for b in budgets]
        rows = [r for r in rows if _at_budget(number(r.get("budget_flops")), wanted_budgets)]
    return ft.with_records(rows)


def _sort_key(value: Any) -> tuple[bool, Any]:
    """pandas' sort order within a column: missing values (None, NaN) last."""
    missing = value is None or value != value
    return (missing, None if missing else value)


def comparison_rows(table: Table) -> Rows:
    """Aggregate per-seed rows to the comparison table, over pretraining runs and their fine-tuning seeds.

    A row is one configuration (pretraining spec less its seed, task, checkpoint, fine-tuning settings):
    `pretrain_runs` replicate it, each fine-tuned over `seeds` seeds (the fewest any run has); the score
    columns are over every fine-tuning run; `not_learned` counts the runs that did not learn and why.
    Per-seed scores go to attrs[SEED_SCORES]; per pretraining run, the scores of runs that learned, to
    attrs[RUN_SCORES] (what claims use).
    """
    ft = as_rows(table)
    rows, scores_by_key, runs_by_key, glue_by_key = [], {}, {}, {}
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in ft.records:
        key = tuple(r.get(k) for k in ("pretrain_config", "task", "fraction", "settings", "task_data", "task_code"))
        if is_present(key):  # as groupby: a row with a missing key is in no group
            groups.setdefault(key, []).append(r)
    for g in groups.values():  # in order of first appearance, as groupby(sort=False)
        first = g[0]
        scores = [number(r.get("score")) for r in g]
        by_run: dict[Any, list[dict[str, Any]]] = {}
        for r in g:
            by_run.setdefault(r.get("pretrain_id"), []).append(r)
        failed = [r["not_learned"] for r in g if r.get("not_learned")]
        rows.append({
            "model": first["model"], "size": first["size"], "task": first["task"],
            "finetune": finetune_label(first.get("settings"), trained=first.get("train_examples")),
            SETTINGS: first.get("settings") or "",
            "budget_flops": number(first["budget_flops"]), "pretrain_steps": int(first["pretrain_steps"]),
            "pretrain_flops": number(first["pretrain_flops"]),
            "pretrain_flops_paper": number(first["pretrain_flops_paper"]),
            "pretrain_flops_executed": number(first["pretrain_flops_executed"]),
            "pretrain_wall_s": statistics.median(number(rs[0]["pretrain_wall_s"]) for rs in by_run.values()),
            "tokens_per_s": statistics.median(number(rs[0]["tokens_per_s"]) for rs in by_run.values()),
            "finetune_wall_s": statistics.median(number(r["finetune_wall_s"]) for r in g),
            "score_median": statistics.median(scores), "score_min": min(scores), "score_max": max(scores),
            "pretrain_runs": len(by_run),
            "pretrain_seeds": ",".join(str(s) for s in sorted({rs[0].get("pretrain_seed") or 0 for rs in by_run.values()})),
            "seeds": min(len(rs) for rs in by_run.values()),
            "not_learned": _not_learned_text(failed, len(g)),
            "also": other_metrics(g),
        })
        # groups come in run order, so a later run of the same point (new code version) wins
        scores_by_key[_key(rows[-1])] = scores
        runs_by_key[_key(rows[-1])] = [[number(r.get("score")) for r in rs if not r.get("not_learned")]
                                       for _, rs in sorted(by_run.items(), key=lambda kv: kv[1][0].get("pretrain_seed") or 0)]
        col = paper_metric_column(first["task"])
        if all(is_present((r.get(col),)) for r in g):
            glue_by_key[_key(rows[-1])] = statistics.median(float(r[col]) for r in g)
    rows.sort(key=lambda r: tuple(_sort_key(r[c]) for c in ("task", "size", "model", "pretrain_flops")))  # stable
    return Rows(rows, [*COLUMNS, SETTINGS], {SEED_SCORES: Shared(scores_by_key), RUN_SCORES: Shared(runs_by_key),
                                GLUE_PAPER: Shared(glue_by_key)})


def _not_learned_text(reasons: list[str], total: int) -> str:
    """'' when every run learned; else '3/3: every dev prediction is one class' (the commonest reason)."""
    if not reasons:
        return ""
    common = max(set(reasons), key=reasons.count)
    return f"{len(reasons)}/{total}: {common}"


def other_metrics(runs: list[dict[str, Any]]) -> str:
    """The task's other metrics beside its headline score, median over the runs: e.g. SQuAD's exact match
    beside its F1, MRPC's accuracy beside its F1 ("exact_match 0.4120"). A metric equal to the score in
    every run is the headline itself, and left out."""
    names = dict.fromkeys(k for r in runs for k in r if k.startswith("metric_"))
    parts = []
    for name in names:
        values = [number(r.get(name)) for r in runs]
        if any(v != v for v in values) or all(v == number(r.get("score")) for v, r in zip(values, runs)):
            continue
        parts.append(f"{name[len('metric_'):]} {statistics.median(values):.4f}")
    return ", ".join(parts)


def comparison_from(ft: Table) -> pd.DataFrame:
    """The comparison table as a DataFrame, per-seed scores in df.attrs[SEED_SCORES]."""
    return comparison_rows(ft).frame()


def comparison_table(store: Store, *, run_ids: Iterable[str] | None = None,
                     pretrain_ids: Iterable[str] | None = None, tasks: Iterable[str] | None = None,
                     models: Iterable[str] | None = None, sizes: Iterable[str] | None = None,
                     budgets: Iterable[float] | None = None, fractions: Iterable[float] | None = None) -> pd.DataFrame:
    """The comparison: seeds aggregated to median, min and max of the headline score.

    Columns exactly COLUMNS; the per-seed scores ride along in `df.attrs["seed_scores"]`.
    """
    ft = filter_finetune(finetune_rows(store), run_ids=run_ids, pretrain_ids=pretrain_ids, tasks=tasks, models=models,
                         sizes=sizes, budgets=budgets, fractions=fractions)
    return comparison_from(ft)


def _key(row: dict[str, Any]) -> tuple[str, str, str, float, float, str]:
    return (str(row["model"]), str(row["size"]), str(row["task"]), float(row["budget_flops"] or 0.0),
            float(row["pretrain_flops"]), settings_of(row))


def settings_of(row: dict[str, Any]) -> str:
    """A comparison row's fine-tuning settings ("" for a table without them): rows fine-tuned otherwise (a
    suite's low-resource regime beside the default's, in one store) are other comparisons, never pooled."""
    value = row.get(SETTINGS)
    return value if isinstance(value, str) else ""


def finetune_label(settings: str | None, *, trained: float | None = None) -> str:
    """The fine-tuning regime in a few words, for the table: "20,000 ex x 1 ep" ("all ex" without a cap).
    `trained`, the examples a run trained on, replaces a cap the task's train split is smaller than
    (WNUT-17's 3,394 sentences under a 20,000 cap read "3,394 ex", not "20,000 ex")."""
    try:
        s = json.loads(settings or "{}")
    except ValueError:
        return ""
    if not s:
        return ""
    n = s.get("max_train_examples")
    shown = f"{int(n):,}" if n else "all"
    if n and is_present((trained,)) and trained < n:
        shown = f"{int(trained):,}"
    return f"{shown} ex x {float(s.get('epochs') or 0):g} ep"


def short_error(error: str | None) -> str:
    """A run's error in a few words for a table cell: a traceback's last line, or the first clause."""
    text = (error or "failed").strip()
    if text.startswith("Traceback"):
        text = text.splitlines()[-1]
    first = text.split(": ", 1)[0] if text.startswith(("pretraining diverged", "interrupted")) else text
    return first if len(first) <= 80 else first[:77] + "..."


def failed_rows(store: Store, pretrain_ids: Iterable[str], finetune_ids: Iterable[str],
                tasks: Iterable[str]) -> pd.DataFrame:
    """Rows in COLUMNS for planned configurations without a result: a failed pretraining run (once
    per task) and a fine-tuning point none of whose seeds finished. The reason stands where the
    score would."""
    rows = []
    for pid in pretrain_ids:
        r = store.run(pid)
        if r is None or r["status"] == "done":
            continue
        error = short_error(r["error"]) if r["status"] == "failed" else "not finished"
        reason = error if error.startswith("pretraining") else f"pretraining {error}"
        for task in tasks:
            rows.append(_failed_row(r, task, reason))
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for fid in finetune_ids:
        r = store.run(fid)
        if r is not None:
            groups.setdefault((r["parent_id"], r["task"], r["spec"].get("fraction", 1.0)), []).append(r)
    for runs in groups.values():
        if runs and not any(r["status"] == "done" for r in runs):
            failed = [r for r in runs if r["status"] == "failed"]
            if failed:
                rows.append(_failed_row(failed[0], failed[0]["task"], f"fine-tuning {short_error(failed[0]['error'])}"))
    return Rows(rows, COLUMNS).frame()


def _failed_row(r: dict[str, Any], task: str, reason: str) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update({"model": r["model"], "size": r["size"], "task": task, "budget_flops": r["budget"],
                "score_median": reason, "seeds": 0})
    return row


def seed_scores_of(table: Table, row: dict[str, Any]) -> list[float] | None:
    return table.attrs.get(SEED_SCORES, {}).get(_key(row))


def run_scores_of(table: Table, row: dict[str, Any]) -> list[list[float]] | None:
    """Per pretraining run, the scores of its fine-tuning runs that learned (None: a table without them)."""
    return table.attrs.get(RUN_SCORES, {}).get(_key(row))


def full_budget(table: Table) -> Rows:
    """Each model's full-budget point per task, size and budget; older duplicate runs dropped."""
    rows = as_rows(table)
    keys = ("model", "size", "task", "budget_flops")

    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        return (*(r.get(c) for c in keys), settings_of(r))  # another fine-tuning regime is another point

    top: dict[tuple[Any, ...], float] = {}  # groupby(keys)["pretrain_flops"].max(): missing keys and NaN skipped
    for r in rows.records:
        k, f = key(r), r.get("pretrain_flops")
        if is_present(k) and is_present((f,)) and (k not in top or f > top[k]):
            top[k] = f
    last: dict[tuple[Any, ...], int] = {}  # drop_duplicates(keys, keep="last") among the top points
    for i, r in enumerate(rows.records):
        k = key(r)
        if k in top and r.get("pretrain_flops") == top[k]:
            last[k] = i
    kept = set(last.values())
    return rows.with_records([r for i, r in enumerate(rows.records) if i in kept])


# --- leaderboard ------------------------------------------------------------------------------------

LEADERBOARD_HEAD = ["rank", "model", "size", "budget_flops", "params", "pretrain_flops", "pretrain_wall_s",
                    "tokens_per_s"]


def leaderboard_rows(table: Table, pre: Table | None = None) -> Rows:
    """One row per model configuration (model, size, budget), ranked by the headline score.

    The headline is the mean over tasks of each task's median score at the full budget; for GLUE
    tasks the paper's GLUE score (PAPER_GLUE_METRIC, WNLI left out). Configurations missing a task
    rank after complete ones.
    """
    full = full_budget(table)
    if full.empty:
        return Rows([], LEADERBOARD_HEAD + ["score", "pretrain_runs", "seeds", "machines"])
    tasks = sorted({r["task"] for r in full.records})
    score_col = score_column(tasks)
    info = _params_by_config(pre)
    machines = _machines_by_config(pre)
    glue_paper = full.attrs.get(GLUE_PAPER, {})
    configs: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in full.records:  # groupby(["model", "size", "budget_flops"], sort=False)
        configs.setdefault((r["model"], r["size"], r["budget_flops"]), []).append(r)
    rows = []
    for (model, size, budget), g in configs.items():
        per_task = {r["task"]: r["score_median"] for r in g}
        averaged = per_task
        if score_col == "glue_avg":  # the paper's metric per task, WNLI left out
            averaged = {t: glue_paper.get(_key(r), r["score_median"]) for r in g
                        if (t := r["task"]) not in GLUE_AVERAGE_EXCLUDES} or per_task
        row: dict[str, Any] = {"model": model, "size": size, "budget_flops": float(budget),
                               "params": info.get((model, size, float(budget)), math.nan),
                               "pretrain_flops": _max(r["pretrain_flops"] for r in g),
                               "pretrain_wall_s": _max(r["pretrain_wall_s"] for r in g),
                               "tokens_per_s": _max(r["tokens_per_s"] for r in g)}
        for t in tasks:
            row[t] = per_task.get(t, math.nan)
        row[score_col] = statistics.fmean(averaged.values())
        row["pretrain_runs"] = int(min(number(r.get("pretrain_runs")) for r in g)) if all(
            is_present((r.get("pretrain_runs"),)) for r in g) else 1
        row["seeds"] = int(min(r["seeds"] for r in g))
        row["machines"] = machines.get((model, size, float(budget)), "")
        row["_complete"] = len(per_task) == len(tasks)
        rows.append(row)
    # sort_values(["_complete", score], ascending=False, kind="stable"): a NaN score last
    rows.sort(key=lambda r: (not r["_complete"], *_sort_key(-r[score_col])))
    columns = LEADERBOARD_HEAD[1:] + [t for t in tasks if len(tasks) > 1] + [score_col, "pretrain_runs", "seeds",
                                                                            "machines"]
    return Rows([{"rank": i, **{c: r[c] for c in columns}} for i, r in enumerate(rows, 1)], ["rank", *columns])


def leaderboard(table: Table, pre: Table | None = None) -> pd.DataFrame:
    """leaderboard_rows as a DataFrame."""
    return leaderboard_rows(table, pre).frame()


def _max(values: Iterable[Any]) -> float:
    """A column's max as pandas takes it: NaN skipped, NaN when there is nothing else."""
    present = [float(v) for v in values if is_present((v,))]
    return max(present) if present else math.nan


def score_column(tasks: list[str]) -> str:
    if len(tasks) <= 1:
        return "score"
    return "glue_avg" if all(t in GLUE_TASKS for t in tasks) else "avg_score"


def _params_by_config(pre: Table | None) -> dict[tuple[str, str, float], float]:
    """Encoder parameters (what is fine-tuned) per configuration; the latest run wins."""
    if pre is None:
        return {}
    return {(r["model"], r["size"], float(r["budget_flops"] or 0.0)): r["encoder_params"]
            for r in as_rows(pre).records}


def machine_label(env: dict[str, Any] | None) -> str:
    """`host (device)` from a run's environment; '' when it names neither."""
    env = env or {}
    host, device = env.get("host"), env.get("device")
    if host and device:
        return f"{host} ({device})"
    return str(host or device or "")


def _machines_by_config(pre: Table | None) -> dict[tuple[str, str, float], str]:
    """The machines each configuration's pretraining runs ran on, `host (device)`, sorted, comma-separated."""
    if pre is None:
        return {}
    found: dict[tuple[str, str, float], set[str]] = {}
    for r in as_rows(pre).records:
        label = r.get("machine")
        if isinstance(label, str) and label:
            found.setdefault((r["model"], r["size"], float(r["budget_flops"] or 0.0)), set()).add(label)
    return {k: ", ".join(sorted(v)) for k, v in found.items()}
