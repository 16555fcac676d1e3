"""Stores from several machines: `bench export` (a checksummed bundle), `bench merge` (one store from many,
idempotent, conflicts refused) and `bench report --results A --results B` (read as one, nothing copied).

Runs are written straight into Store objects (no training), as tests/test_report.py does.
"""

from __future__ import annotations

import json
import sqlite3
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

import bench
from bench.cli import main
from bench.results.export import BundleError, export_bundle, read_bundle
from bench.results.merge import MergeConflict, StoreSet, merge
from bench.results.report import build_report
from bench.results.store import Metric, Store

BUDGET = 1.6e13
HOST_A = {"host": "node-a", "device": "cpu", "packages": {"torch": "2.13.0"}, "code_version": "src-test"}
HOST_B = {"host": "node-b", "device": "NVIDIA H100 80GB HBM3", "packages": {"torch": "2.13.0"},
          "code_version": "src-test"}


def add_pretrain(store: Store, model: str, env: dict, *, seed: int = 0, code: str = "src-test",
                 pretrains: bool = True) -> str:
    run_id = f"pt-{model}-{seed}-{code}"
    spec = {"model": model, "size": "tiny", "convention": "paper", "pretrains": pretrains, "external": None, "seed": seed,
            "budget": {"kind": "flops", "value": BUDGET if pretrains else 0.0, "text": f"{BUDGET:g}"},
            "identity": {"corpus": "synthetic-v1"}}
    store.claim(run_id, kind="pretrain", model=model, spec=spec, code_version=code, size="tiny",
                budget=BUDGET if pretrains else 0.0, git_sha="abc123", environment=env)
    steps = 160 if pretrains else 0
    metrics = [Metric("steps", steps), Metric("wall_s", 120.0), Metric("tokens_per_s", 5000.0),
               Metric("flops_paper", steps * 1e11), Metric("flops_executed", steps * 0.8e11),
               Metric("encoder_params", 4.0e6 if pretrains else float("nan"))]
    metrics += [Metric("loss", 7.0 - s / 100, step=s, flops=s * 1e11, wall_s=s * 0.75) for s in range(10, steps + 1, 10)]
    store.finish(run_id, metrics)
    return run_id


def add_finetune(store: Store, parent: str, model: str, env: dict, scores: list[float], *, task: str = "sst2",
                 code: str = "src-test", seed0: int = 0) -> list[str]:
    ids = []
    for i, score in enumerate(scores):
        seed = seed0 + i
        run_id = f"ft-{parent}-{task}-{seed}"
        spec = {"model": model, "task": task, "seed": seed, "fraction": 1.0, "pretrain_id": parent, "size": "tiny",
                "settings": {"lr": 3e-4, "epochs": 3}, "task_data": "td-1"}
        store.claim(run_id, kind="finetune", model=model, spec=spec, code_version=code, task=task, size="tiny",
                    budget=BUDGET, seed=seed, parent_id=parent, git_sha="abc123", environment=env)
        store.finish(run_id, [Metric("score", score), Metric("metric_accuracy", score), Metric("train_wall_s", 10.0),
                              Metric("eval_wall_s", 1.0), Metric("fraction", 1.0)])
        ids.append(run_id)
    return ids


def fill_a(store: Store) -> None:
    pt = add_pretrain(store, "electra", HOST_A)
    add_finetune(store, pt, "electra", HOST_A, [0.84, 0.85, 0.86])
    ctrl = add_pretrain(store, "scratch", HOST_A, pretrains=False)  # run on both machines: kept once
    add_finetune(store, ctrl, "scratch", HOST_A, [0.59, 0.60, 0.61])


def fill_b(store: Store) -> None:
    pt = add_pretrain(store, "bert", HOST_B)
    add_finetune(store, pt, "bert", HOST_B, [0.79, 0.80, 0.81])
    ctrl = add_pretrain(store, "scratch", HOST_A, pretrains=False)  # the same runs, the same numbers
    add_finetune(store, ctrl, "scratch", HOST_A, [0.59, 0.60, 0.61])


@pytest.fixture
def machines(tmp_path: Path) -> dict[str, Path]:
    """Two machines' results folders (a, b) and one folder holding every run (all)."""
    folders = {name: tmp_path / name for name in ("a", "b", "all")}
    with Store(folders["a"] / "bench.db") as s:
        fill_a(s)
    with Store(folders["b"] / "bench.db") as s:
        fill_b(s)
    with Store(folders["all"] / "bench.db") as s:
        fill_a(s)
        pt = add_pretrain(s, "bert", HOST_B)
        add_finetune(s, pt, "bert", HOST_B, [0.79, 0.80, 0.81])
    return folders


def board(db: Path | list[Path]) -> str:
    """The leaderboard as canonical JSON (NaN equal to NaN)."""
    dbs = db if isinstance(db, list) else [db]
    with (StoreSet(dbs) if len(dbs) > 1 else Store(dbs[0])) as store:
        rows = build_report(store).leaderboard_rows
    return json.dumps({"columns": rows.columns, "rows": rows.records}, sort_keys=True, default=str)


def dump(db: Path) -> list:
    con = sqlite3.connect(db)
    try:
        runs = con.execute("SELECT id, status, spec, environment, code_version, started_at, finished_at FROM runs "
                           "ORDER BY id").fetchall()
        metrics = con.execute("SELECT run_id, name, value, step, flops, wall_s FROM metrics "
                              "ORDER BY run_id, name, step").fetchall()
    finally:
        con.close()
    return [runs, metrics]


def test_export_then_merge_gives_the_leaderboard_of_one_store_and_again_changes_nothing(machines, tmp_path):
    bundle = tmp_path / "a.bench.zip"
    manifest = export_bundle(machines["a"], bundle)
    assert manifest["runs"] == 8 and not manifest["checkpoints"]
    snap = read_bundle(bundle)  # provenance travels: spec (data fingerprint), environment, code version
    run = snap.runs["pt-electra-0-src-test"]
    assert run["environment"]["host"] == "node-a" and run["environment"]["packages"] == {"torch": "2.13.0"}
    assert run["spec"]["identity"] == {"corpus": "synthetic-v1"} and run["code_version"] == "src-test"
    assert run["status"] == "done" and any(m[0] == "loss" and m[2] == 10 for m in snap.metrics[run["id"]])

    merged = tmp_path / "merged"
    summary = merge([bundle, machines["b"]], merged)
    assert (summary.added, summary.same) == (12, 4)  # the control and its 3 seeds were on both machines
    assert board(merged / "bench.db") == board(machines["all"] / "bench.db")
    with Store(merged / "bench.db") as s:
        rows = build_report(s).leaderboard_rows.records
    assert {r["model"]: r["machines"] for r in rows} == {"electra": "node-a (cpu)", "bert": "node-b (NVIDIA H100 80GB HBM3)",
                                                         "scratch": "node-a (cpu)"}
    before = dump(merged / "bench.db")
    again = merge([bundle, machines["b"]], merged)
    assert (again.added, again.replaced, again.same) == (0, 0, 16)
    assert dump(merged / "bench.db") == before
    # read as one without copying: the same leaderboard
    assert board([machines["a"] / "bench.db", machines["b"] / "bench.db"]) == board(machines["all"] / "bench.db")


def test_a_tampered_bundle_is_refused_by_its_checksum(machines, tmp_path):
    bundle = tmp_path / "a.bench.zip"
    export_bundle(machines["a"], bundle)
    with zipfile.ZipFile(bundle) as z:
        members = {name: z.read(name) for name in z.namelist()}
    data = json.loads(members["runs.json"])
    run = next(r for r in data["runs"] if r["model"] == "electra" and r["kind"] == "finetune")
    for m in run["metrics"]:
        if m[0] == "score":
            m[1] = 0.99  # a better number than the run gave
    members["runs.json"] = json.dumps(data, sort_keys=True, indent=1).encode()
    tampered = tmp_path / "tampered.bench.zip"
    with zipfile.ZipFile(tampered, "w") as z:
        for name, payload in members.items():
            z.writestr(name, payload)
    with pytest.raises(BundleError, match="runs.json does not match its checksum"):
        read_bundle(tampered)
    target = tmp_path / "merged"
    result = CliRunner().invoke(main, ["merge", str(tampered), "--into", str(target)])
    assert result.exit_code != 0 and "does not match its checksum" in result.output
    assert not (target / "bench.db").exists() or dump(target / "bench.db") == [[], []]
    # a member added behind the manifest's back is refused too
    with zipfile.ZipFile(bundle, "a") as z:
        z.writestr("runs/pt-electra-0-src-test/ckpt-1/model.safetensors", b"not from export")
    with pytest.raises(BundleError, match="not the ones its manifest lists"):
        read_bundle(bundle)


def test_a_run_with_the_same_id_and_other_metrics_is_a_conflict_and_nothing_is_written(machines, tmp_path):
    other = tmp_path / "other"
    with Store(other / "bench.db") as s:
        pt = add_pretrain(s, "bert", HOST_A)
        add_finetune(s, pt, "bert", HOST_A, [0.79, 0.70, 0.81])  # seed 1 disagrees with machine b's run
    target = tmp_path / "merged"
    with pytest.raises(MergeConflict) as err:
        merge([machines["b"], other], target)
    assert err.value.conflicts and "ft-pt-bert-0-src-test-sst2-1" in err.value.conflicts[0]
    assert "score (0.8 vs 0.7)" in err.value.conflicts[0]
    assert dump(target / "bench.db") == [[], []]  # nothing half-written
    # a conflict with a run already in the target: the target is left as it was
    merge([machines["b"]], target)
    before = dump(target / "bench.db")
    result = CliRunner().invoke(main, ["merge", str(other), "--into", str(target)])
    assert result.exit_code != 0 and "same id but different metrics" in result.output
    assert "ft-pt-bert-0-src-test-sst2-1" in result.output
    assert dump(target / "bench.db") == before
    # and reading both as one is refused the same way, never a silent pick
    with pytest.raises(MergeConflict):
        StoreSet([machines["b"] / "bench.db", other / "bench.db"])


def test_runs_of_other_code_stay_apart_and_the_merge_names_their_fingerprints(machines, tmp_path):
    newer = tmp_path / "newer"
    with Store(newer / "bench.db") as s:
        pt = add_pretrain(s, "electra", HOST_B, code="src-newer")
        add_finetune(s, pt, "electra", HOST_B, [0.90, 0.91, 0.92], code="src-newer")
    summary = merge([machines["a"], newer], tmp_path / "merged")
    assert summary.added == 12 and summary.same == 0
    text = "\n".join(summary.lines())
    assert "runs of 2 code versions, kept apart" in text and "src-newer (4 run(s)), src-test (8 run(s))" in text
    assert "data" not in text  # one corpus and one task data set: nothing to tell apart
    with Store(tmp_path / "merged" / "bench.db") as s:
        assert {r["code_version"] for r in s.runs() if r["model"] == "electra"} == {"src-test", "src-newer"}


def test_a_done_run_replaces_a_failed_one_and_checkpoints_travel_only_when_asked(machines, tmp_path):
    ckpt = machines["a"] / "runs" / "pt-electra-0-src-test" / "ckpt-1"
    ckpt.mkdir(parents=True)
    (ckpt / "model.safetensors").write_bytes(b"weights")
    plain, full = tmp_path / "plain.zip", tmp_path / "full.zip"
    export_bundle(machines["a"], plain)
    assert export_bundle(machines["a"], full, checkpoints=True)["sha256"].keys() > {"runs.json"}
    target = tmp_path / "merged"
    with Store(target / "bench.db") as s:  # the target tried this run and failed
        s.claim("pt-electra-0-src-test", kind="pretrain", model="electra", spec={}, code_version="src-test")
        s.fail("pt-electra-0-src-test", "killed")
    summary = merge([plain], target)
    assert (summary.added, summary.replaced) == (7, 1)
    assert not (target / "runs" / "pt-electra-0-src-test").exists()
    other = tmp_path / "merged2"
    merge([full], other, checkpoints=True)
    assert (other / "runs" / "pt-electra-0-src-test" / "ckpt-1" / "model.safetensors").read_bytes() == b"weights"


def test_report_reads_several_stores_as_one_and_names_the_machines(machines, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["report", "--results", str(machines["a"]), "--results", str(machines["b"])])
    assert result.exit_code == 0, result.output
    text = result.output
    board_part = text.split("## Leaderboard", 1)[1].split("## Claims", 1)[0]
    assert "machines" in board_part and "node-a (cpu)" in board_part and "node-b (NVIDIA H100 80GB HBM3)" in board_part
    assert text.count("## Leaderboard") == 1
    lines = [line for line in board_part.splitlines() if line.startswith("|") and ("electra" in line or "bert" in line)]
    assert len(lines) == 2  # one leaderboard, a row per model from either machine
    # nothing was copied: each store holds what it held
    assert len(dump(machines["a"] / "bench.db")[0]) == 8 and len(dump(machines["b"] / "bench.db")[0]) == 8
    loaded = bench.load([machines["a"], machines["b"]])
    assert len(loaded.runs) == 12 and set(loaded.runs["model"]) == {"electra", "bert", "scratch"}
    view = bench.report([machines["a"], machines["b"]])
    assert set(view.leaderboard["machines"]) == {"node-a (cpu)", "node-b (NVIDIA H100 80GB HBM3)"}


def test_export_and_merge_commands(machines, tmp_path):
    runner = CliRunner()
    out = tmp_path / "a.bench.zip"
    r = runner.invoke(main, ["export", "--results", str(machines["a"]), "--out", str(out)])
    assert r.exit_code == 0 and "8 run(s)" in r.output, r.output
    r = runner.invoke(main, ["merge", str(out), str(machines["b"]), "--into", str(tmp_path / "m")])
    assert r.exit_code == 0 and "12 run(s) added" in r.output, r.output
    r = runner.invoke(main, ["merge", str(out), str(machines["b"]), "--into", str(tmp_path / "m")])
    assert r.exit_code == 0 and "0 run(s) added" in r.output and "16 already there" in r.output, r.output
