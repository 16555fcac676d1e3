"""Experiment trackers (TensorBoard, MLflow, W&B, Aim): views of a run, through accelerate's tracking API.

The store stays the source of truth. A tracker never enters a run's spec or id, never changes
what is trained, and its failure never fails a run: the first error of a tracker is one
warning, and the run goes on without that tracker. Only the main process logs (accelerate's
`init_trackers` is main-process-only; `RunTracker.log` checks the same).

Files go under `<results>/trackers/` (tensorboard/, mlruns/, wandb/, aim/) unless the tracker's
own environment variable says otherwise (MLFLOW_TRACKING_URI, WANDB_DIR; MLFLOW_EXPERIMENT_NAME
and WANDB_PROJECT name the project).
"""

from __future__ import annotations

import difflib
import importlib.util
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import ConfigError

PROJECT = "electra-bench"  # the MLflow experiment / W&B project every run is logged under
MFLOPS = 1e6  # the FLOPs-keyed series use FLOPs / 1e6 as their (int64) step: room up to ~9e24 FLOPs
ALLOW_FILE_STORE = "MLFLOW_ALLOW_FILE_STORE"  # MLflow 3 opt-in for its (local, serverless) file store
FLOPS_PREFIX = "by_mflops/"  # pretraining series keyed by FLOPs: by_mflops/loss at step = FLOPs done / 1e6


@dataclass(frozen=True)
class TrackerKind:
    """A supported tracker: the module that must import, and the extra that installs it."""

    module: str
    extra: str
    package: str


TRACKERS: dict[str, TrackerKind] = {
    "tensorboard": TrackerKind("tensorboard", "tensorboard", "tensorboard"),
    "mlflow": TrackerKind("mlflow", "mlflow", "mlflow-skinny"),
    "wandb": TrackerKind("wandb", "wandb", "wandb"),
    "aim": TrackerKind("aim", "aim", "aim"),
}


def pip_line(name: str) -> str:
    """The install command for tracker `name`'s extra."""
    return f"pip install 'electra-bench[{TRACKERS[name].extra}]'"


def check_names(names: tuple[str, ...], where: str) -> None:
    """A ConfigError naming `where` for a name that is not a supported tracker (with a did-you-mean)."""
    for name in names:
        if name not in TRACKERS:
            close = difflib.get_close_matches(name, list(TRACKERS), n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{where}: unknown tracker {name!r}.{hint} Known trackers: {', '.join(TRACKERS)}.")


def check_installed(names: tuple[str, ...], where: str = "--tracker") -> None:
    """Before any training: every named tracker's package imports, or a ConfigError with its pip line."""
    check_names(names, where)
    for name in names:
        kind = TRACKERS[name]
        if importlib.util.find_spec(kind.module) is None:
            raise ConfigError(f"{where}: tracker {name!r} needs the {kind.package} package, which is not installed: "
                              f"{pip_line(name)} (or drop {name!r} from the trackers).")


@dataclass(frozen=True)
class TrackerSettings:
    """Which trackers, and the folder their files go under (<results>/trackers). Travels with a job."""

    names: tuple[str, ...]
    root: str

    @staticmethod
    def of(names: tuple[str, ...], results_dir: Path) -> TrackerSettings | None:
        return TrackerSettings(tuple(dict.fromkeys(names)), str(Path(results_dir) / "trackers")) if names else None


def pretrain_run_name(model: str, size: str, seed: int = 0) -> str:
    """`pretrain-electra-tiny` (and `-seed1` for another pretraining seed)."""
    return f"pretrain-{model}-{size}" + (f"-seed{seed}" if seed else "")


def finetune_run_name(model: str, task: str, size: str, seed: int, fraction: float = 1.0) -> str:
    """`finetune-electra-sst2-tiny-seed0` (and `-at0.25` for a checkpoint at a quarter of the budget)."""
    return f"finetune-{model}-{task}-{size}-seed{seed}" + (f"-at{fraction:g}" if fraction < 1 else "")


def flat_params(spec: dict[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """A run's spec as flat hyper-parameters (`budget.value`, `settings.lr`, ...): scalars only,
    what TensorBoard's hparams and MLflow's params take; lists and None become text."""
    out: dict[str, bool | int | float | str] = {}
    for key, value in spec.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_params(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = str(value)
    return out


@dataclass
class RunTracker:
    """One run's trackers: `accelerator_kwargs()` for the loop's Accelerator, then `start`, `log`, `finish`."""

    settings: TrackerSettings
    run_name: str
    run_id: str
    params: dict[str, Any]
    problems: list[str] = field(default_factory=list)  # one line per tracker that failed (warned once)
    _accelerator: Any = None
    _mlflow_uri: str | None = None  # while this run set MLflow's tracking URI: the one before ("" = none)
    _mlflow_env: str | None = None  # MLFLOW_ALLOW_FILE_STORE before this run set it

    def accelerator_kwargs(self) -> dict[str, Any]:
        """`log_with` for the Accelerator the loop uses: accelerate's tracker objects, built here so
        each gets its own run name and folder (init_trackers gives every tracker one project name)."""
        trackers = []
        for name in self.settings.names:
            try:
                trackers.append(self._make(name))
            except Exception as exc:  # noqa: BLE001 - a tracker never fails the run
                self._warn(name, exc)
        return {"log_with": trackers} if trackers else {}

    def _make(self, name: str) -> Any:
        from accelerate import tracking

        root = Path(self.settings.root)
        if name == "tensorboard":  # <root>/tensorboard/<run name>/<run id>: one folder per run, attempts appended
            return tracking.TensorBoardTracker(f"{self.run_name}/{self.run_id}", root / "tensorboard")
        if name == "mlflow":
            return tracking.MLflowTracker(PROJECT, run_name=self.run_name, tags={"bench.run_id": self.run_id})
        if name == "wandb":
            kwargs: dict[str, Any] = {"name": self.run_name}
            if not os.environ.get("WANDB_DIR"):
                (root / "wandb").mkdir(parents=True, exist_ok=True)
                kwargs["dir"] = str(root / "wandb")
            return tracking.WandBTracker(os.environ.get("WANDB_PROJECT", PROJECT), **kwargs)
        if name == "aim":
            return tracking.AimTracker(self.run_name, str(root / "aim"))
        raise ConfigError(f"unknown tracker {name!r}")

    def start(self, accelerator: Any) -> None:
        """Open the runs (main process only) with the spec as hyper-parameters."""
        self._accelerator = accelerator
        if not accelerator.trackers and not accelerator.log_with:
            return
        try:
            if accelerator.is_main_process and any(_kind(t) == "mlflow" for t in accelerator.log_with):
                self._use_mlflow_store()
            accelerator.init_trackers(PROJECT, config=self.params)
        except Exception as exc:  # noqa: BLE001
            self._warn(", ".join(_kind(t) for t in accelerator.log_with), exc)
            self._close_all()

    def log(self, values: dict[str, float], step: int) -> None:
        """Log `values` at `step` to every tracker still working (main process only)."""
        acc = self._accelerator
        if acc is None or not acc.is_main_process or not acc.trackers:
            return
        values = {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and math.isfinite(v)}
        for tracker in list(acc.trackers):
            try:
                tracker.log(values, step=step)
            except Exception as exc:  # noqa: BLE001 - the run goes on without this tracker
                self._warn(_kind(tracker), exc)
                acc.trackers.remove(tracker)
                _finish_quietly(tracker)

    def log_pretraining(self, values: dict[str, float], step: int, flops: float) -> None:
        """A pretraining point: each value (and `flops`, FLOPs done) at `step`, and again keyed by FLOPs."""
        self.log({**values, "flops": flops}, step)
        self.log({f"{FLOPS_PREFIX}{k}": v for k, v in values.items()}, int(round(flops / MFLOPS)))

    def finish(self) -> None:
        """Close every tracker's run (idempotent). Never accelerator.end_training(): it would also end
        the process group the next run of this DDP launch needs."""
        self._close_all()

    def _close_all(self) -> None:
        acc = self._accelerator
        if acc is not None and acc.is_main_process:
            for tracker in list(acc.trackers):
                try:
                    tracker.finish()
                except Exception as exc:  # noqa: BLE001
                    self._warn(_kind(tracker), exc)
            acc.trackers.clear()
        self._restore_mlflow_store()

    def _use_mlflow_store(self) -> None:
        """MLflow's tracking URI: MLFLOW_TRACKING_URI if set, else a file store under the results folder.
        MLflow 3 refuses its file store unless MLFLOW_ALLOW_FILE_STORE=true: set while this run logs."""
        if os.environ.get("MLFLOW_TRACKING_URI"):
            return
        import mlflow

        before = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else ""
        self._mlflow_env = os.environ.get(ALLOW_FILE_STORE)
        os.environ[ALLOW_FILE_STORE] = "true"
        store = Path(self.settings.root, "mlruns").resolve()
        store.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(store.as_uri())
        self._mlflow_uri = before

    def _restore_mlflow_store(self) -> None:
        """Leave MLflow as this run found it (set_tracking_uri also sets, or with None unsets,
        MLFLOW_TRACKING_URI: the next run, maybe with another results folder, must not see ours)."""
        if self._mlflow_uri is None:
            return
        import mlflow

        before, self._mlflow_uri = self._mlflow_uri, None
        mlflow.set_tracking_uri(before or None)
        if self._mlflow_env is None:
            os.environ.pop(ALLOW_FILE_STORE, None)
        else:
            os.environ[ALLOW_FILE_STORE] = self._mlflow_env

    def _warn(self, name: str, exc: BaseException) -> None:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        message = (f"tracker {name} failed ({type(exc).__name__}: {first}); run {self.run_name} goes on without "
                   f"it (the store has every value)")
        self.problems.append(message)  # the run's result carries it: `bench run` prints it as a warning


def _kind(tracker: Any) -> str:
    return str(getattr(tracker, "name", tracker))


def _finish_quietly(tracker: Any) -> None:
    try:
        tracker.finish()
    except Exception:  # noqa: BLE001 - already warned about this tracker
        pass
