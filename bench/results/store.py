"""The results store: one SQLite file, a row per run, a row per metric.

Every write is one transaction. A run's metrics are written together with its `done`
status, so a crash never leaves a half-written result: a run is either done with all its
metrics, or failed/running with none, and is then retried on the next `bench run`.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,          -- pretrain | finetune
    model        TEXT NOT NULL,
    task         TEXT,
    size         TEXT,
    budget       REAL,
    seed         INTEGER,
    parent_id    TEXT,                   -- a fine-tuning run's pretraining run
    spec         TEXT NOT NULL,          -- canonical JSON of the run's spec
    code_version TEXT NOT NULL,
    git_sha      TEXT,
    environment  TEXT,                   -- JSON: versions, device, threads, host
    status       TEXT NOT NULL,          -- running | done | failed
    error        TEXT,
    started_at   TEXT,
    finished_at  TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id  TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    name    TEXT NOT NULL,
    value   REAL,
    step    INTEGER,                     -- NULL for a run's final value
    flops   REAL,
    wall_s  REAL
);
CREATE INDEX IF NOT EXISTS metrics_run ON metrics(run_id, name);
"""

STATUSES = ("running", "done", "failed")


@dataclass(frozen=True)
class Metric:
    name: str
    value: float
    step: int | None = None
    flops: float | None = None
    wall_s: float | None = None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Store:
    """`Store(path)` opens (and creates) the SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=60)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA foreign_keys = ON")
        with self._tx() as c:
            c.executescript(SCHEMA)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        # `with conn` commits on success and rolls back on any exception.
        with self._conn:
            yield self._conn

    # --- writes ---------------------------------------------------------------------------

    def start(self, run_id: str, *, kind: str, model: str, spec: dict[str, Any], code_version: str,
              task: str | None = None, size: str | None = None, budget: float | None = None,
              seed: int | None = None, parent_id: str | None = None, git_sha: str | None = None,
              environment: dict[str, Any] | None = None) -> None:
        """Mark a run as running (replacing a failed or interrupted attempt and its metrics)."""
        with self._tx() as c:
            c.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            c.execute("DELETE FROM runs WHERE id = ?", (run_id,))
            c.execute(
                "INSERT INTO runs (id, kind, model, task, size, budget, seed, parent_id, spec, code_version,"
                " git_sha, environment, status, error, started_at, finished_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', NULL, ?, NULL)",
                (run_id, kind, model, task, size, budget, seed, parent_id, canonical_json(spec), code_version,
                 git_sha, json.dumps(environment or {}, sort_keys=True), _now()),
            )

    def finish(self, run_id: str, metrics: list[Metric]) -> None:
        """Write all of a run's metrics and mark it done, in one transaction."""
        with self._tx() as c:
            c.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            c.executemany(
                "INSERT INTO metrics (run_id, name, value, step, flops, wall_s) VALUES (?, ?, ?, ?, ?, ?)",
                [(run_id, m.name, _num(m.value), m.step, _num(m.flops), _num(m.wall_s)) for m in metrics],
            )
            cur = c.execute("UPDATE runs SET status = 'done', error = NULL, finished_at = ? WHERE id = ?",
                            (_now(), run_id))
            if cur.rowcount != 1:
                raise KeyError(f"run {run_id} was never started in {self.path}")

    def fail(self, run_id: str, error: str) -> None:
        with self._tx() as c:
            c.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            c.execute("UPDATE runs SET status = 'failed', error = ?, finished_at = ? WHERE id = ?",
                      (error, _now(), run_id))

    # --- reads ----------------------------------------------------------------------------

    def status(self, run_id: str) -> str | None:
        row = self._conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
        return row["status"] if row else None

    def is_done(self, run_id: str) -> bool:
        return self.status(run_id) == "done"

    def run(self, run_id: str) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return _row(row) if row else None

    def runs(self, *, kind: str | None = None, status: str | None = "done") -> list[dict[str, Any]]:
        query, args = "SELECT * FROM runs WHERE 1=1", []
        if kind:
            query += " AND kind = ?"
            args.append(kind)
        if status:
            query += " AND status = ?"
            args.append(status)
        return [_row(r) for r in self._conn.execute(query + " ORDER BY started_at, id", args)]

    def final_metrics(self, run_id: str) -> dict[str, float]:
        rows = self._conn.execute(
            "SELECT name, value FROM metrics WHERE run_id = ? AND step IS NULL", (run_id,)
        ).fetchall()
        return {r["name"]: r["value"] for r in rows}

    def series(self, run_id: str, name: str) -> list[Metric]:
        rows = self._conn.execute(
            "SELECT name, value, step, flops, wall_s FROM metrics WHERE run_id = ? AND name = ? AND step IS NOT NULL"
            " ORDER BY step", (run_id, name)).fetchall()
        return [Metric(r["name"], r["value"], r["step"], r["flops"], r["wall_s"]) for r in rows]


def canonical_json(obj: Any) -> str:
    """The one JSON form used for hashing and storing specs: sorted keys, no spaces."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def _num(x: float | None) -> float | None:
    return None if x is None else float(x)


def _row(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    d["spec"] = json.loads(d["spec"])
    d["environment"] = json.loads(d["environment"] or "{}")
    return d
