import sqlite3

import pytest

from bench.results.store import Metric, Store


def test_round_trip(tmp_path):
    with Store(tmp_path / "bench.db") as s:
        s.start("pt-1", kind="pretrain", model="electra", spec={"b": 2, "a": 1}, code_version="src-x",
                size="tiny", budget=1e12, environment={"device": "cpu"})
        assert s.status("pt-1") == "running" and not s.is_done("pt-1")
        s.finish("pt-1", [Metric("steps", 10), Metric("loss", 2.5, step=5, flops=5e11, wall_s=1.0)])
        assert s.is_done("pt-1")
        run = s.run("pt-1")
        assert run["spec"] == {"a": 1, "b": 2} and run["environment"] == {"device": "cpu"}
        assert s.final_metrics("pt-1") == {"steps": 10.0}
        assert s.series("pt-1", "loss") == [Metric("loss", 2.5, 5, 5e11, 1.0)]
    with Store(tmp_path / "bench.db") as s:  # reopened: persisted
        assert [r["id"] for r in s.runs(kind="pretrain")] == ["pt-1"]


def test_failed_run_keeps_no_metrics_and_is_retried(tmp_path):
    with Store(tmp_path / "bench.db") as s:
        s.start("ft-1", kind="finetune", model="bert", spec={}, code_version="v")
        s.fail("ft-1", "boom")
        assert s.status("ft-1") == "failed" and s.final_metrics("ft-1") == {}
        assert s.runs() == []  # only done runs by default
        s.start("ft-1", kind="finetune", model="bert", spec={}, code_version="v")
        s.finish("ft-1", [Metric("score", 0.9)])
        assert s.final_metrics("ft-1") == {"score": 0.9}


def test_finish_is_atomic(tmp_path):
    with Store(tmp_path / "bench.db") as s:
        s.start("r", kind="pretrain", model="m", spec={}, code_version="v")
        with pytest.raises(Exception):
            s.finish("r", [Metric("ok", 1.0), Metric("bad", "not a number")])  # type: ignore[arg-type]
        assert s.status("r") == "running" and s.final_metrics("r") == {}
    rows = sqlite3.connect(tmp_path / "bench.db").execute("SELECT count(*) FROM metrics").fetchone()
    assert rows == (0,)
