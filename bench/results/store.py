"""The results store: one SQLite file, a row per run, a row per metric, shared by processes.

Every write is one transaction. A run's metrics are written together with its `done` status,
so a crash never leaves a half-written result: a run is either done with all its metrics, or
running/failed with none, and is then retried (or resumed) by the next `bench run`.

Several `bench run` processes may share one store (WAL mode, a busy timeout). Before a
process works on a run it **claims** it: the row records the owner (host, pid and the pid's
start time) and a heartbeat. Another process skips a run whose owner is alive and takes over
one whose owner is dead (same host: the process is gone; other host: no heartbeat for
`STALE_S`). Only the owner can finish or fail its run, and a `done` row is never replaced.

`PRAGMA user_version` versions the schema: older stores are migrated in place, newer ones
are refused with a message that says so.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

from bench.errors import StoreError

DB_NAME = "bench.db"  # the store's file in a results folder
SCHEMA_VERSION = 3  # 1: runs + metrics (no claims); 2: attempts, owner, heartbeat; 3: job_id, node
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
    status       TEXT NOT NULL,          -- queued | running | done | failed
    error        TEXT,
    started_at   TEXT,
    finished_at  TEXT,
    attempts     INTEGER NOT NULL DEFAULT 1,  -- claims taken on this run (a resumed run counts 2)
    owner        TEXT,                   -- host:pid:start of the process holding the claim
    heartbeat    REAL,                   -- unix time of the owner's last sign of life
    job_id       TEXT,                   -- the cluster job running it (bench run --executor), if any
    node         TEXT                    -- where that job runs
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
MIGRATIONS = {  # from version -> statements that bring it to version + 1
    1: ["ALTER TABLE runs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1",
        "ALTER TABLE runs ADD COLUMN owner TEXT",
        "ALTER TABLE runs ADD COLUMN heartbeat REAL"],
    2: ["ALTER TABLE runs ADD COLUMN job_id TEXT",
        "ALTER TABLE runs ADD COLUMN node TEXT"],
}
STATUSES = ("queued", "running", "done", "failed")
HELD = ("queued", "running")  # statuses a live owner holds
HEARTBEAT_S = 30.0  # how often an owner refreshes its claims
STALE_S = 180.0  # a claim from another host with no heartbeat for this long is taken over
BUSY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Metric:
    name: str
    value: float
    step: int | None = None
    flops: float | None = None
    wall_s: float | None = None


@dataclass(frozen=True)
class Owner:
    """A process that can hold claims: its host, pid and the pid's start time (guards pid reuse)."""

    host: str
    pid: int
    start: str

    @property
    def token(self) -> str:
        return f"{self.host}:{self.pid}:{self.start}"

    @staticmethod
    def parse(token: str | None) -> Owner | None:
        parts = (token or "").rsplit(":", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        return Owner(parts[0], int(parts[1]), parts[2])

    @staticmethod
    def current() -> Owner:
        return Owner(socket.gethostname(), os.getpid(), _process_start(os.getpid()))

    def is_alive(self, heartbeat: float | None, *, now: float | None = None, stale_s: float = STALE_S) -> bool:
        """Same host: the process exists and is the same one. Elsewhere: a recent heartbeat."""
        if self.host == socket.gethostname():
            start = _process_start(self.pid)
            return start is not None and (start == self.start or not start or not self.start)
        now = time.time() if now is None else now
        return heartbeat is not None and now - heartbeat < stale_s


@dataclass(frozen=True)
class Claim:
    """The outcome of `Store.claim`: `claimed` (yours, attempt N), `adopted` (yours now, with the
    cluster job a dead owner had submitted, `job_id`), `done`, or `busy` (a live owner's)."""

    outcome: str
    attempt: int = 0
    owner: str | None = None
    job_id: str | None = None


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux); None: no such process; '': unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None
        return "" if _pid_exists(pid) else None  # no /proc (macOS): the pid alone
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the command name may hold spaces


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _explain(path: Path, exc: BaseException) -> StoreError:
    """One line naming the file, what SQLite said, and what to do."""
    msg = str(exc)
    if isinstance(exc, sqlite3.DatabaseError) and ("not a database" in msg or "malformed" in msg
                                                   or "corrupt" in msg):
        return StoreError(f"the results store {path} is damaged (SQLite: {msg}). Move it aside "
                          f"(mv {path} {path}.broken) and re-run to start a new store (its finished runs are then "
                          f"recomputed), or try to salvage it with `sqlite3 {path} .recover | sqlite3 recovered.db`.")
    if "disk is full" in msg or "No space" in msg:
        return StoreError(f"the disk holding the results store {path} is full (SQLite: {msg}). Free space there, "
                          f"or point --results at another folder.")
    if "readonly" in msg or "unable to open" in msg or "permission" in msg.lower() or isinstance(exc, OSError):
        return StoreError(f"cannot write the results store {path} ({msg}). --results must name a folder you can "
                          f"write to.")
    return StoreError(f"the results store {path} failed (SQLite: {msg}).")


class Store:
    """`Store(path)` opens (and creates, or migrates) the SQLite file; errors are `StoreError`s."""

    def __init__(self, path: str | Path, *, owner: Owner | None = None) -> None:
        self.path = Path(path)
        self.owner = owner or Owner.current()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the results folder {self.path.parent} ({exc.strerror}). --results must "
                             f"name a folder you can write to.") from None
        if self.path.exists() and not self.path.is_file():
            raise StoreError(f"the results store {self.path} is not a file. Remove it or point --results elsewhere.")
        try:
            self._conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                         check_same_thread=False)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._setup()
        except sqlite3.DatabaseError as exc:
            raise _explain(self.path, exc) from None
        self._lock = threading.Lock()  # the heartbeat thread shares the connection

    def _setup(self) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"the results store {self.path} was written by a newer electra-bench (store schema "
                             f"{version}; this version reads up to {SCHEMA_VERSION}). Upgrade electra-bench, or "
                             f"point --results at another folder.")
        if self._conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self._conn.execute("PRAGMA journal_mode = WAL")  # readers never block the writer
        tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if version == SCHEMA_VERSION:
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            if "runs" in tables:  # a store from before versioning, or an older version: migrate in place
                for v in range(max(version, 1), SCHEMA_VERSION):
                    for statement in MIGRATIONS[v]:
                        self._conn.execute(statement)
            else:
                for statement in SCHEMA.split(";\n"):
                    if statement.strip():
                        self._conn.execute(statement)
            self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken with the write lock up front (BEGIN IMMEDIATE): a claim's
        read-then-write can never interleave with another process's."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                except BaseException:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise _explain(self.path, exc) from None

    def _read(self, query: str, args: tuple | list = ()) -> list[sqlite3.Row]:
        try:
            with self._lock:
                return self._conn.execute(query, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise _explain(self.path, exc) from None

    # --- integrity -----------------------------------------------------------------------

    def check_integrity(self) -> None:
        """SQLite's own integrity check; a damaged store is a StoreError naming the file."""
        rows = [r[0] for r in self._read("PRAGMA integrity_check")]
        if rows != ["ok"]:
            raise _explain(self.path, sqlite3.DatabaseError(f"database disk image is malformed: {rows[0]}"))

    # --- claims ----------------------------------------------------------------------------

    def claim(self, run_id: str, *, kind: str, model: str, spec: dict[str, Any], code_version: str,
              task: str | None = None, size: str | None = None, budget: float | None = None,
              seed: int | None = None, parent_id: str | None = None, git_sha: str | None = None,
              environment: dict[str, Any] | None = None, stale_s: float = STALE_S) -> Claim:
        """Take `run_id` for this process unless it is done or held by a live owner.

        A new run gets attempt 1; a failed run, or one whose owner died, is taken over with
        its attempt count raised by one (its metrics, if any, are dropped).
        """
        me = self.owner.token
        with self._tx() as c:
            row = c.execute("SELECT status, owner, heartbeat, attempts, job_id FROM runs WHERE id = ?",
                            (run_id,)).fetchone()
            if row is not None and row["status"] == "done":
                return Claim("done")
            if row is not None and row["status"] in HELD and row["owner"] != me:
                holder = Owner.parse(row["owner"])
                if holder is not None and holder.is_alive(row["heartbeat"], stale_s=stale_s):
                    return Claim("busy", owner=row["owner"], job_id=row["job_id"])
                if row["job_id"]:  # a dead driver's job may still be queued or running: watch it, not a new one
                    c.execute("UPDATE runs SET owner = ?, heartbeat = ? WHERE id = ?", (me, time.time(), run_id))
                    return Claim("adopted", attempt=int(row["attempts"] or 1), owner=me, job_id=row["job_id"])
            attempt = 1 if row is None else int(row["attempts"] or 0) + 1
            values = (kind, model, task, size, budget, seed, parent_id, canonical_json(spec), code_version, git_sha,
                      json.dumps(environment or {}, sort_keys=True), _now(), attempt, me, time.time())
            if row is None:
                c.execute("INSERT INTO runs (kind, model, task, size, budget, seed, parent_id, spec, code_version,"
                          " git_sha, environment, started_at, attempts, owner, heartbeat, status, id)"
                          " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?)", (*values, run_id))
            else:
                c.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
                c.execute("UPDATE runs SET kind = ?, model = ?, task = ?, size = ?, budget = ?, seed = ?, parent_id = ?,"
                          " spec = ?, code_version = ?, git_sha = ?, environment = ?, started_at = ?, attempts = ?,"
                          " owner = ?, heartbeat = ?, status = 'running', error = NULL, finished_at = NULL,"
                          " job_id = NULL, node = NULL WHERE id = ?", (*values, run_id))
        return Claim("claimed", attempt=attempt, owner=me)

    def heartbeat(self) -> int:
        """Refresh every claim this process holds; returns how many."""
        with self._tx() as c:
            return c.execute("UPDATE runs SET heartbeat = ? WHERE owner = ? AND status IN ('queued', 'running')",
                             (time.time(), self.owner.token)).rowcount

    def mark_queued(self, run_id: str, job_id: str) -> None:
        """This process handed its run to cluster job `job_id` (owner only)."""
        with self._tx() as c:
            self._check_owner(c, run_id)
            c.execute("UPDATE runs SET status = 'queued', job_id = ?, node = NULL WHERE id = ?", (job_id, run_id))

    def mark_running(self, run_id: str, node: str | None) -> None:
        """The run's job started (on `node`)."""
        with self._tx() as c:
            self._check_owner(c, run_id)
            c.execute("UPDATE runs SET status = 'running', node = COALESCE(?, node) WHERE id = ?", (node, run_id))

    @contextmanager
    def heartbeats(self, interval_s: float = HEARTBEAT_S) -> Iterator[None]:
        """Keep this process's claims fresh from a background thread while the block runs."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(interval_s):
                try:
                    self.heartbeat()
                except StoreError:
                    pass  # a busy or full store now and then: the next beat tries again

        thread = threading.Thread(target=beat, name="bench-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    # --- writes by the owner ----------------------------------------------------------------

    def finish(self, run_id: str, metrics: list[Metric], environment: dict[str, Any] | None = None) -> None:
        """Write all of a run's metrics and mark it done, in one transaction (owner only);
        `environment`: where it ran, when that is not where it was claimed (a cluster job)."""
        rows = [(run_id, m.name, _num(m.value), m.step, _num(m.flops), _num(m.wall_s)) for m in metrics]
        with self._tx() as c:
            self._check_owner(c, run_id)
            c.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            c.executemany("INSERT INTO metrics (run_id, name, value, step, flops, wall_s) VALUES (?, ?, ?, ?, ?, ?)",
                          rows)
            c.execute("UPDATE runs SET status = 'done', error = NULL, finished_at = ?, owner = NULL WHERE id = ?",
                      (_now(), run_id))
            if environment is not None:
                c.execute("UPDATE runs SET environment = ? WHERE id = ?", (json.dumps(environment, sort_keys=True),
                                                                          run_id))

    def fail(self, run_id: str, error: str) -> bool:
        """Mark this process's run failed (no metrics kept). False if it is not ours to fail."""
        with self._tx() as c:
            row = c.execute("SELECT status, owner FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None or row["status"] not in HELD or row["owner"] != self.owner.token:
                return False
            c.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
            c.execute("UPDATE runs SET status = 'failed', error = ?, finished_at = ?, owner = NULL WHERE id = ?",
                      (error, _now(), run_id))
        return True

    def reopen(self, run_id: str, reason: str) -> bool:
        """Turn a done run back into a failed one (its result is gone, e.g. checkpoints deleted by
        hand), so the next claim recomputes it. False if it was not done."""
        with self._tx() as c:
            cur = c.execute("UPDATE runs SET status = 'failed', error = ?, owner = NULL WHERE id = ? AND status = 'done'",
                            (reason, run_id))
            if cur.rowcount:
                c.execute("DELETE FROM metrics WHERE run_id = ?", (run_id,))
        return bool(cur.rowcount)

    def put_runs(self, runs: list[dict[str, Any]], metrics: dict[str, list[Metric]]) -> None:
        """Write finished or failed runs from elsewhere (`bench merge`) with all their metrics, in one
        transaction: a run new here is added, a failed one here is replaced; a run done or held here is a
        StoreError and nothing is written. No owner is recorded: nobody here holds them."""
        cols = ("id", "kind", "model", "task", "size", "budget", "seed", "parent_id", "spec", "code_version", "git_sha",
                "environment", "status", "error", "started_at", "finished_at", "attempts", "job_id", "node")
        with self._tx() as c:
            for r in runs:
                if r.get("status") not in ("done", "failed"):
                    raise StoreError(f"run {r.get('id')} has status {r.get('status')!r}; only done or failed runs "
                                     f"are merged")
                row = c.execute("SELECT status FROM runs WHERE id = ?", (r["id"],)).fetchone()
                if row is not None and row["status"] != "failed":
                    raise StoreError(f"run {r['id']} is {row['status']} in {self.path}: not replaced")
                if row is not None:
                    c.execute("DELETE FROM metrics WHERE run_id = ?", (r["id"],))
                    c.execute("DELETE FROM runs WHERE id = ?", (r["id"],))
                values = {**{k: r.get(k) for k in cols}, "spec": canonical_json(r.get("spec") or {}),
                          "environment": json.dumps(r.get("environment") or {}, sort_keys=True),
                          "attempts": int(r.get("attempts") or 1)}
                c.execute(f"INSERT INTO runs ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
                          tuple(values[k] for k in cols))
                c.executemany("INSERT INTO metrics (run_id, name, value, step, flops, wall_s) VALUES (?, ?, ?, ?, ?, ?)",
                              [(r["id"], m.name, _num(m.value), m.step, _num(m.flops), _num(m.wall_s))
                               for m in metrics.get(r["id"], [])])

    def _check_owner(self, c: sqlite3.Connection, run_id: str) -> None:
        row = c.execute("SELECT status, owner FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"run {run_id} was never claimed in {self.path}")
        if row["status"] not in HELD or row["owner"] != self.owner.token:
            raise StoreError(f"run {run_id} is no longer this process's to finish in {self.path} (status "
                             f"{row['status']}, owner {row['owner']}): another process took it over; its result "
                             f"stands and this one is dropped.")

    # --- reads ----------------------------------------------------------------------------

    def status(self, run_id: str) -> str | None:
        rows = self._read("SELECT status FROM runs WHERE id = ?", (run_id,))
        return rows[0]["status"] if rows else None

    def is_done(self, run_id: str) -> bool:
        return self.status(run_id) == "done"

    def run(self, run_id: str) -> dict[str, Any] | None:
        rows = self._read("SELECT * FROM runs WHERE id = ?", (run_id,))
        return _row(rows[0]) if rows else None

    def runs(self, *, kind: str | None = None, status: str | None = "done") -> list[dict[str, Any]]:
        query, args = "SELECT * FROM runs WHERE 1=1", []
        if kind:
            query += " AND kind = ?"
            args.append(kind)
        if status:
            query += " AND status = ?"
            args.append(status)
        return [_row(r) for r in self._read(query + " ORDER BY started_at, id", args)]

    def final_metrics(self, run_id: str) -> dict[str, float]:
        rows = self._read("SELECT name, value FROM metrics WHERE run_id = ? AND step IS NULL ORDER BY name, rowid",
                          (run_id,))
        return {r["name"]: r["value"] for r in rows}

    def all_final_metrics(self) -> dict[str, dict[str, float]]:
        """final_metrics of every run in one query (run id -> name -> value), in the same order."""
        out: dict[str, dict[str, float]] = {}
        for run_id, name, value in self._read("SELECT run_id, name, value FROM metrics WHERE step IS NULL"
                                              " ORDER BY run_id, name, rowid"):
            out.setdefault(run_id, {})[name] = value
        return out

    def series(self, run_id: str, name: str) -> list[Metric]:
        rows = self._read("SELECT name, value, step, flops, wall_s FROM metrics WHERE run_id = ? AND name = ?"
                          " AND step IS NOT NULL ORDER BY step", (run_id, name))
        return [Metric(r["name"], r["value"], r["step"], r["flops"], r["wall_s"]) for r in rows]

    def metric_rows(self, run_ids: Iterable[str] | None = None) -> list[tuple[Any, ...]]:
        """Every metric point in one query, in write order: (run_id, name, step, value, flops, wall_s); step is
        None for a final value. `run_ids` keeps only those runs' points."""
        rows = self._read("SELECT run_id, name, step, value, flops, wall_s FROM metrics ORDER BY rowid")
        wanted = None if run_ids is None else set(run_ids)
        return [tuple(r) for r in rows if wanted is None or r[0] in wanted]


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
