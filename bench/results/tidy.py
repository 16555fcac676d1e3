"""The store as tidy DataFrames for pandas / polars / DuckDB users: runs, metric points, and the long table.

`runs_frame`: one row per run (any status) with its identity, timing, provenance, and its spec and
environment flattened into `spec.<key>` / `env.<key>` columns (nested keys joined with dots).
`metrics_frame`: one row per metric point (a final scalar has step NaN). `long_table`: the runs
with each run's final scalar metrics as `metric.<name>` columns, one row per run, as benchopt
writes its results; `bench report --format parquet` writes it.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Iterable

import pandas as pd

from bench.results.store import Store

RUN_COLUMNS = ["run_id", "kind", "model", "task", "size", "budget", "seed", "pretrain_seed", "parent_id", "status",
               "attempts",
               "error", "started_at", "finished_at", "wall_s", "git_sha", "code_version"]
METRIC_COLUMNS = ["run_id", "name", "step", "value", "flops", "wall_s"]


def flatten(obj: dict[str, Any], prefix: str) -> dict[str, Any]:
    """{"a": {"b": 1}, "c": [1, 2]} -> {"<prefix>.a.b": 1, "<prefix>.c": "[1, 2]"}: scalars only, so every
    column has one type (a list becomes its JSON text)."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}.{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name))
        elif isinstance(value, (dict, list, tuple)):
            out[name] = json.dumps(value, sort_keys=True, default=str)
        else:
            out[name] = value
    return out


def elapsed(start: str | None, end: str | None) -> float | None:
    """Seconds from `start` to `end` (ISO times in the store); None where either is missing."""
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def runs_frame(store: Store, *, run_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """One row per run, oldest first: RUN_COLUMNS (wall_s = finished_at - started_at), then `spec.*`, `env.*`.

    `pretrain_seed`: a pretraining run's own seed, a fine-tuning run's pretraining run's (which replicate it)."""
    wanted = None if run_ids is None else set(run_ids)
    rows = []
    every = store.runs(status=None)
    pretrain_seed = {r["id"]: r["spec"].get("seed", 0) for r in every if r["kind"] == "pretrain"}
    for r in every:
        if wanted is not None and r["id"] not in wanted:
            continue
        row = {"run_id": r["id"], **{c: r.get(c) for c in RUN_COLUMNS[1:] if c not in ("wall_s", "pretrain_seed")},
               "pretrain_seed": pretrain_seed.get(r["id"] if r["kind"] == "pretrain" else r["parent_id"]),
               "wall_s": elapsed(r["started_at"], r["finished_at"])}
        row.update(flatten(r["spec"], "spec"))
        row.update(flatten(r["environment"] or {}, "env"))
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=RUN_COLUMNS)
    extra = sorted(c for c in frame.columns if c not in RUN_COLUMNS)  # spec.* then env.*, each sorted
    return frame[RUN_COLUMNS + sorted(extra, key=lambda c: (not c.startswith("spec."), c))]


def metrics_frame(store: Store, *, run_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """One row per metric point: run_id, name, step (NaN for a run's final value), value, flops, wall_s."""
    rows = store.metric_rows(run_ids)
    frame = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    return frame.astype({"step": "float64", "value": "float64", "flops": "float64", "wall_s": "float64"})


def long_table(store: Store, *, run_ids: Iterable[str] | None = None) -> pd.DataFrame:
    """runs_frame with each run's final scalar metrics as `metric.<name>` columns (NaN where a run lacks one)."""
    runs = runs_frame(store, run_ids=run_ids)
    wanted = set(runs["run_id"])
    # one query for the final values alone (a name written twice keeps its last value, as Store.final_metrics),
    # not every point of every series
    finals = {run_id: m for run_id, m in store.all_final_metrics().items() if run_id in wanted}
    if not finals:
        return runs
    wide = pd.DataFrame.from_dict(finals, orient="index").astype("float64")
    wide = wide[sorted(wide.columns)].add_prefix("metric.")
    return runs.merge(wide, how="left", left_on="run_id", right_index=True)
