"""`bench status`: every run of a store with its state, job and error, as a table."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pandas as pd

from bench.results.tables import short_error
from bench.results.store import Store

COLUMNS = ["id", "kind", "model", "task", "seed", "status", "attempts", "job_id", "node", "elapsed_s", "error"]


def status_frame(store: Store, *, show_all: bool = False) -> pd.DataFrame:
    """One row per run, oldest first; without `show_all` the done ones are left out unless all are done."""
    now = datetime.now(timezone.utc)
    rows = []
    for r in store.runs(status=None):
        start = _time(r["started_at"])
        end = _time(r["finished_at"]) or (now if r["status"] in ("queued", "running") else None)
        rows.append({"id": r["id"], "kind": r["kind"], "model": r["model"], "task": r["task"] or "",
                     "seed": "" if r["seed"] is None else r["seed"], "status": r["status"],
                     "attempts": r.get("attempts", 1), "job_id": r.get("job_id") or "", "node": r.get("node") or "",
                     "elapsed_s": round((end - start).total_seconds(), 1) if start and end else None,
                     "error": short_error(r["error"]) if r["status"] == "failed" else ""})
    frame = pd.DataFrame(rows, columns=COLUMNS)
    if not show_all and not frame.empty and (frame["status"] != "done").any():
        frame = frame[frame["status"] != "done"]
    return frame.reset_index(drop=True)


def render_status(frame: pd.DataFrame, fmt: str = "md") -> str:
    if fmt == "csv":
        return frame.to_csv(index=False).rstrip("\n")
    if fmt == "json":
        return json.dumps(frame.astype(object).where(frame.notna(), None).to_dict("records"), indent=2)
    from tabulate import tabulate

    counts = frame["status"].value_counts().to_dict() if not frame.empty else {}
    head = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no runs"
    table = tabulate(frame.fillna("").values.tolist(), headers=COLUMNS, tablefmt="github", disable_numparse=True)
    return f"{head}\n{table}"


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None
