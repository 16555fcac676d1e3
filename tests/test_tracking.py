"""Experiment trackers: a tiny real `bench run` logs to TensorBoard and MLflow, read back offline
and compared with the store (the source of truth); trackers never change run ids; clear errors."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import main
from bench.config import load_experiment
from bench.errors import ConfigError
from bench.results.store import Store

SMALL = ["run", "--quiet", "--models", "electra", "--control", "none", "--seeds", "1"]  # one pretraining, one fine-tuning


def invoke(args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(cwd)
    return CliRunner().invoke(main, args, catch_exceptions=False)


def add_run_keys(project: Path, lines: str) -> None:
    """Add keys to the fixture's [run] table."""
    toml = project / "bench.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace("[run]\n", f"[run]\n{lines}\n", 1), encoding="utf-8")


def runs(store: Store, kind: str) -> list[dict]:
    return store.runs(kind=kind)


def test_tensorboard_and_mlflow_mirror_the_store(micro_project, monkeypatch):
    pytest.importorskip("tensorboard", reason="pip install 'electra-bench[tensorboard]'")
    pytest.importorskip("mlflow", reason="pip install 'electra-bench[mlflow]'")
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    add_run_keys(micro_project, 'trackers = ["tensorboard", "mlflow"]')
    r = invoke(SMALL, micro_project, monkeypatch)
    assert r.exit_code == 0, r.output
    assert " failed (" not in r.output  # no tracker warned
    assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_ALLOW_FILE_STORE" not in os.environ  # left as found
    results = micro_project / "results"
    store = Store(results / "bench.db")
    (pt,) = runs(store, "pretrain")
    (ft,) = runs(store, "finetune")
    loss = store.series(pt["id"], "loss")
    lr = store.series(pt["id"], "lr")
    assert len(loss) >= 2 and store.series(pt["id"], "disc_loss")  # every loss the loop records

    # TensorBoard: <results>/trackers/tensorboard/<run name>/<run id>, the store's points exactly
    tb = results / "trackers" / "tensorboard" / "pretrain-electra-micro" / pt["id"]
    events = EventAccumulator(str(tb), size_guidance={"scalars": 0})
    events.Reload()
    scalars = {tag: events.Scalars(tag) for tag in events.Tags()["scalars"]}
    assert [(e.step, pytest.approx(e.value, rel=1e-5)) for e in scalars["loss"]] == [(m.step, m.value) for m in loss]
    assert [e.step for e in scalars["lr"]] == [m.step for m in lr]
    assert [e.value for e in scalars["flops"]] == pytest.approx([m.flops for m in loss])  # FLOPs done at each point
    assert [e.step for e in scalars["by_mflops/loss"]] == [round(m.flops / 1e6) for m in loss]  # loss vs FLOPs
    assert {"gen_loss", "disc_loss"} <= set(scalars)
    hparams = list(tb.glob("*/hparams.yml"))
    assert hparams and f"run_id: {pt['id']}" in hparams[0].read_text()
    ft_tb = results / "trackers" / "tensorboard" / "finetune-electra-toy-micro-seed0" / ft["id"]
    assert ft_tb.is_dir()

    # MLflow: a local file store under the results folder, read back with its client
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads its file store only when asked
    client = MlflowClient(tracking_uri=(results / "trackers" / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name("electra-bench")
    by_name = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    assert set(by_name) == {"pretrain-electra-micro", "finetune-electra-toy-micro-seed0"}
    mp = by_name["pretrain-electra-micro"]
    history = client.get_metric_history(mp.info.run_id, "loss")
    assert len(history) == len(loss)
    assert sorted((h.step, h.value) for h in history) == [(m.step, pytest.approx(m.value)) for m in loss]
    assert mp.data.params["run_id"] == pt["id"] and mp.data.params["model"] == "electra"
    assert float(mp.data.params["budget.value"]) == pt["spec"]["budget"]["value"]  # the spec as hyper-parameters
    mf = by_name["finetune-electra-toy-micro-seed0"]
    final = store.final_metrics(ft["id"])
    assert len(client.get_metric_history(mf.info.run_id, "loss")) == final["steps"]  # training loss per step
    assert mf.data.metrics["score"] == pytest.approx(final["score"])
    assert mf.data.params["run_id"] == ft["id"] and mf.data.params["settings.lr"]

    # the same command again: everything is in the store, nothing re-runs, no tracker run is added
    again = invoke(SMALL, micro_project, monkeypatch)
    assert again.exit_code == 0 and "0 pretrained, 0 fine-tuned" in again.output, again.output
    assert len(client.search_runs([experiment.experiment_id])) == 2

    # trackers never change what is trained: the same runs without them, in another folder, store the same numbers
    toml = micro_project / "bench.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace('trackers = ["tensorboard", "mlflow"]\n', ""), encoding="utf-8")
    plain = invoke([*SMALL, "--results", "plain"], micro_project, monkeypatch)
    assert plain.exit_code == 0, plain.output
    other = Store(micro_project / "plain" / "bench.db")
    assert [r["id"] for r in runs(other, "pretrain")] == [pt["id"]]
    assert [(m.step, m.value) for m in other.series(pt["id"], "loss")] == [(m.step, m.value) for m in loss]
    assert other.final_metrics(ft["id"])["score"] == final["score"]
    assert not (micro_project / "plain" / "trackers").exists()


def test_trackers_are_not_in_run_ids(micro_project, monkeypatch):
    from bench.plan import plan_experiment

    monkeypatch.chdir(micro_project)
    plain = plan_experiment(load_experiment())
    tracked = plan_experiment(load_experiment(overrides={"trackers": ("tensorboard", "mlflow")}))
    assert tracked.experiment.trackers == ("tensorboard", "mlflow")
    ids = [r.id for r in (*plain.pretrain_runs, *plain.finetune_runs)]
    assert ids == [r.id for r in (*tracked.pretrain_runs, *tracked.finetune_runs)]


def test_a_failing_tracker_warns_once_and_keeps_the_run(micro_project, monkeypatch):
    pytest.importorskip("tensorboard", reason="pip install 'electra-bench[tensorboard]'")
    from accelerate import tracking

    calls = []

    def broken(self, values, step=None, **kwargs):
        calls.append(step)
        raise OSError("disk quota exceeded")

    monkeypatch.setattr(tracking.TensorBoardTracker, "log", broken)  # the tracker's own write fails
    add_run_keys(micro_project, 'trackers = ["tensorboard"]')
    r = invoke(SMALL, micro_project, monkeypatch)
    assert r.exit_code == 0, r.output
    store = Store(micro_project / "results" / "bench.db")
    assert len(runs(store, "pretrain")) == 1 and len(runs(store, "finetune")) == 1  # both runs kept
    assert r.output.count("tracker tensorboard failed (OSError: disk quota exceeded)") == 2  # once per run
    assert len(calls) == 2  # dropped after its first failure in each run


def test_missing_tracker_package_names_the_pip_line(micro_project, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "wandb" else real(name, *a))  # wandb: not installed
    add_run_keys(micro_project, 'trackers = ["wandb"]')
    r = invoke(SMALL, micro_project, monkeypatch)
    assert r.exit_code == 2
    assert "tracker 'wandb' needs the wandb package" in r.output
    assert "pip install 'electra-bench[wandb]'" in r.output and "run.trackers" in r.output
    db = micro_project / "results" / "bench.db"
    assert not db.exists() or not Store(db).runs(status=None)  # nothing trained, nothing claimed


def test_unknown_tracker_is_a_config_error(micro_project, monkeypatch):
    monkeypatch.chdir(micro_project)
    add_run_keys(micro_project, 'trackers = ["tensorbord"]')
    with pytest.raises(ConfigError, match=r"bench\.toml, line 3: run\.trackers: unknown tracker 'tensorbord'\. "
                                          r"Did you mean 'tensorboard'\? Known trackers: tensorboard, mlflow, wandb, aim"):
        load_experiment()
    with pytest.raises(ConfigError, match=r"--tracker: unknown tracker 'mlfow'\. Did you mean 'mlflow'\?"):
        load_experiment(overrides={"trackers": ("mlfow",)})


def test_wandb_offline(micro_project, monkeypatch):
    pytest.importorskip("wandb", reason="pip install 'electra-bench[wandb]'")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    add_run_keys(micro_project, 'trackers = ["wandb"]')
    r = invoke(SMALL, micro_project, monkeypatch)
    assert r.exit_code == 0 and " failed (" not in r.output, r.output
    offline = list((micro_project / "results" / "trackers" / "wandb").glob("wandb/offline-run-*"))
    assert len(offline) == 2  # one per run, under the results folder


def test_jobs_log_too_and_only_rank_0_writes(micro_project):
    """--executor local with 2-process DDP jobs: the tracker settings travel with the job, and only
    rank 0 logs (one point per store point, not two)."""
    pytest.importorskip("tensorboard", reason="pip install 'electra-bench[tensorboard]'")
    pytest.importorskip("submitit", reason="submitit is not installed (pip install submitit)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from conftest import run_bench

    with open(micro_project / "bench.toml", "a", encoding="utf-8") as f:
        f.write("\n[executor]\npoll_s = 0.5\n")
    add_run_keys(micro_project, 'trackers = ["tensorboard"]')
    r = run_bench(["run", "--quiet", "--executor", "local", "--processes-per-job", "2", "--models", "bert",
                   "--control", "none", "--seeds", "1"], micro_project)
    assert r.returncode == 0 and " failed (" not in r.stdout, r.stdout
    store = Store(micro_project / "results" / "bench.db")
    (pt,) = runs(store, "pretrain")
    folder = micro_project / "results" / "trackers" / "tensorboard" / "pretrain-bert-micro" / pt["id"]
    assert len(list(folder.glob("events.out.tfevents.*"))) == 1  # one writer: rank 0
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("loss")] == [m.step for m in store.series(pt["id"], "loss")]
    (ft,) = runs(store, "finetune")
    assert (micro_project / "results" / "trackers" / "tensorboard" / "finetune-bert-toy-micro-seed0" / ft["id"]).is_dir()
