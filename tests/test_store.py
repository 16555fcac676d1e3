"""The results store: transactions, claims shared between processes, schema versions, damage."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from bench.errors import StoreError
from bench.results.store import SCHEMA_VERSION, Metric, Owner, Store

RUN = dict(kind="pretrain", model="electra", spec={"b": 2, "a": 1}, code_version="src-x")


def test_round_trip(tmp_path):
    with Store(tmp_path / "bench.db") as s:
        claim = s.claim("pt-1", size="tiny", budget=1e12, environment={"device": "cpu"}, **RUN)
        assert claim.outcome == "claimed" and claim.attempt == 1
        assert s.status("pt-1") == "running" and not s.is_done("pt-1")
        s.finish("pt-1", [Metric("steps", 10), Metric("loss", 2.5, step=5, flops=5e11, wall_s=1.0)])
        assert s.is_done("pt-1")
        run = s.run("pt-1")
        assert run["spec"] == {"a": 1, "b": 2} and run["environment"] == {"device": "cpu"}
        assert run["attempts"] == 1 and run["owner"] is None
        assert s.final_metrics("pt-1") == {"steps": 10.0}
        assert s.series("pt-1", "loss") == [Metric("loss", 2.5, 5, 5e11, 1.0)]
    with Store(tmp_path / "bench.db") as s:  # reopened: persisted, in WAL mode, at the current schema
        assert [r["id"] for r in s.runs(kind="pretrain")] == ["pt-1"]
        assert s._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_failed_run_keeps_no_metrics_and_is_retried(tmp_path):
    with Store(tmp_path / "bench.db") as s:
        s.claim("ft-1", **RUN)
        assert s.fail("ft-1", "boom")
        assert s.status("ft-1") == "failed" and s.final_metrics("ft-1") == {}
        assert s.runs() == []  # only done runs by default
        assert s.claim("ft-1", **RUN).attempt == 2
        s.finish("ft-1", [Metric("score", 0.9)])
        assert s.final_metrics("ft-1") == {"score": 0.9} and s.run("ft-1")["attempts"] == 2


def test_finish_is_atomic(tmp_path):
    """A failure after the metrics are inserted (here: a trigger refusing `done`) leaves none behind."""
    with Store(tmp_path / "bench.db") as s:
        s.claim("r", **RUN)
        s._conn.execute("CREATE TRIGGER refuse BEFORE UPDATE OF status ON runs WHEN NEW.status = 'done' "
                        "BEGIN SELECT RAISE(ABORT, 'injected failure'); END")
        with pytest.raises(StoreError, match="injected failure"):
            s.finish("r", [Metric("ok", 1.0), Metric("also", 2.0)])
        assert s.status("r") == "running" and s.final_metrics("r") == {}
    rows = sqlite3.connect(tmp_path / "bench.db").execute("SELECT count(*) FROM metrics").fetchone()
    assert rows == (0,)


def test_a_done_run_is_never_claimed_replaced_or_failed(tmp_path):
    with Store(tmp_path / "bench.db") as s:
        s.claim("r", **RUN)
        s.finish("r", [Metric("score", 0.8)])
        assert s.claim("r", **RUN).outcome == "done"
        assert not s.fail("r", "late failure")
        with pytest.raises(StoreError, match="no longer this process's"):
            s.finish("r", [Metric("score", 0.1)])
        assert s.final_metrics("r") == {"score": 0.8} and s.status("r") == "done"


def _other_process_claims(path: str, run_id: str, queue: mp.Queue) -> None:
    with Store(path) as s:
        queue.put(s.claim(run_id, **RUN).outcome)
        queue.put(s.fail(run_id, "not mine"))


def test_a_live_owner_keeps_its_claim_and_a_dead_one_loses_it(tmp_path):
    db = tmp_path / "bench.db"
    with Store(db) as s:
        s.claim("live", **RUN)
        # another process: the run is held by a live owner (this one), and not its to fail
        queue: mp.Queue = mp.get_context("spawn").Queue()
        p = mp.get_context("spawn").Process(target=_other_process_claims, args=(str(db), "live", queue))
        p.start()
        p.join(60)
        assert (queue.get(timeout=5), queue.get(timeout=5)) == ("busy", False)
        assert s.status("live") == "running" and s.run("live")["owner"] == s.owner.token

    # a process that claims and is killed: its claim is taken over, as attempt 2
    code = ("import os, sys; from bench.results.store import Store; s = Store(sys.argv[1]); "
            "s.claim('dead', kind='pretrain', model='m', spec={}, code_version='v'); print('claimed', flush=True); "
            "import time; time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code, str(db)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "claimed"
    with Store(db) as s:
        assert s.claim("dead", **RUN).outcome == "busy"
        child.send_signal(signal.SIGKILL)
        child.wait()
        claim = s.claim("dead", **RUN)
        assert claim.outcome == "claimed" and claim.attempt == 2


def test_claims_from_another_host_expire_without_heartbeats(tmp_path):
    with Store(tmp_path / "bench.db", owner=Owner("node-7", 1234, "99")) as remote:
        remote.claim("r", **RUN)
        with Store(tmp_path / "bench.db") as local:
            assert local.claim("r", stale_s=60, **RUN).outcome == "busy"  # heartbeat just now
            remote._conn.execute("UPDATE runs SET heartbeat = ?", (time.time() - 120,))
            assert local.claim("r", stale_s=600, **RUN).outcome == "busy"
            remote.heartbeat()
            assert local.claim("r", stale_s=60, **RUN).outcome == "busy"
            remote._conn.execute("UPDATE runs SET heartbeat = ?", (time.time() - 120,))
            claim = local.claim("r", stale_s=60, **RUN)
            assert claim.outcome == "claimed" and claim.attempt == 2
        with pytest.raises(StoreError, match="no longer this process's"):
            remote.finish("r", [Metric("score", 0.5)])  # the old owner's late result is dropped


def test_the_heartbeat_thread_keeps_a_claim_fresh(tmp_path):
    with Store(tmp_path / "bench.db") as s:
        s.claim("r", **RUN)
        s._conn.execute("UPDATE runs SET heartbeat = 0")
        with s.heartbeats(interval_s=0.05):
            time.sleep(0.5)
        assert time.time() - s.run("r")["heartbeat"] < 5


def test_an_old_store_is_migrated(tmp_path):
    db = tmp_path / "bench.db"
    con = sqlite3.connect(db)
    con.executescript("""
        CREATE TABLE runs (id TEXT PRIMARY KEY, kind TEXT NOT NULL, model TEXT NOT NULL, task TEXT, size TEXT,
            budget REAL, seed INTEGER, parent_id TEXT, spec TEXT NOT NULL, code_version TEXT NOT NULL, git_sha TEXT,
            environment TEXT, status TEXT NOT NULL, error TEXT, started_at TEXT, finished_at TEXT);
        CREATE TABLE metrics (run_id TEXT NOT NULL, name TEXT NOT NULL, value REAL, step INTEGER, flops REAL,
            wall_s REAL);
        INSERT INTO runs VALUES ('old', 'pretrain', 'bert', NULL, 'tiny', 1e13, NULL, NULL, '{}', 'src-1', NULL,
            '{}', 'done', NULL, '2026-01-01', '2026-01-01');
        INSERT INTO metrics VALUES ('old', 'steps', 10, NULL, NULL, NULL);
    """)
    con.close()
    with Store(db) as s:
        assert s.run("old")["attempts"] == 1 and s.final_metrics("old") == {"steps": 10.0}
        assert s._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert s.claim("new", **RUN).outcome == "claimed"


def test_a_newer_store_is_refused(tmp_path):
    db = tmp_path / "bench.db"
    Store(db).close()
    sqlite3.connect(db).execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match=r"newer electra-bench \(store schema 4; this version reads up to 3\)"):
        Store(db)


def test_a_damaged_store_is_one_clear_error(tmp_path):
    db = tmp_path / "bench.db"
    db.write_bytes(os.urandom(4096))
    with pytest.raises(StoreError, match=r"is damaged .*\(mv .*bench\.db .*bench\.db\.broken\)"):
        Store(db)


def test_a_half_damaged_store_fails_the_integrity_check(tmp_path):
    db = tmp_path / "bench.db"
    with Store(db) as s:
        for i in range(40):
            s.claim(f"r{i}", **RUN)
            s.finish(f"r{i}", [Metric(f"m{j}", float(j), step=j) for j in range(50)])
        s._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        s.check_integrity()
    data = bytearray(db.read_bytes())
    page = 4096
    assert len(data) > 6 * page
    data[3 * page: 3 * page + 64] = bytes(range(64))  # scribble over one page header in the middle
    db.write_bytes(bytes(data))
    with Store(db) as s, pytest.raises(StoreError, match="is damaged"):
        s.check_integrity()


def test_a_results_path_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "results").write_text("not a folder")
    with pytest.raises(StoreError, match="cannot create the results folder"):
        Store(tmp_path / "results" / "bench.db")


def test_a_dead_drivers_job_is_adopted_not_claimed_anew(tmp_path):
    db = tmp_path / "bench.db"
    with Store(db, owner=Owner("node-7", 1234, "99")) as driver:  # another host's driver, silent since
        driver.claim("r", **RUN)
        driver.mark_queued("r", "4242")
        driver._conn.execute("UPDATE runs SET heartbeat = ?", (time.time() - 600,))
    with Store(db) as s:
        claim = s.claim("r", **RUN)
        assert (claim.outcome, claim.job_id, claim.attempt) == ("adopted", "4242", 1)  # the same job, no new attempt
        assert s.run("r")["status"] == "queued" and s.run("r")["owner"] == s.owner.token
        s.mark_running("r", "gpu-3")
        assert s.run("r")["node"] == "gpu-3" and s.run("r")["status"] == "running"
        s.finish("r", [Metric("score", 0.7)])
        assert s.run("r")["job_id"] == "4242" and s.is_done("r")
