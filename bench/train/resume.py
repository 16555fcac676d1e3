"""Resume state of a pretraining run: everything needed to continue it bit for bit.

A state is one folder, `<run dir>/resume/`, holding `state-<step>.safetensors` (model and
optimiser tensors, RNG states, the logged series) and `state.json` (counters, optimiser
settings, Python and NumPy RNG states, the name of the tensor file). Tensors are written
first under a unique temporary name and renamed; `state.json` is replaced last, atomically,
so a kill at any moment leaves either the previous complete state or the new one. Nothing
is pickled: safetensors and JSON only.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from bench.errors import DataError
from bench.results.store import Metric

RESUME_DIR = "resume"
STATE_FILE = "state.json"
FORMAT = 1


@dataclass
class LoopState:
    """The pretraining loop's own counters, saved beside the tensors."""

    step: int = 0
    tokens: int = 0
    wall_s: float = 0.0  # pretraining wall-clock spent by all attempts so far
    window: dict[str, list[float]] = field(default_factory=dict)  # metrics of the unfinished logging window
    final: dict[str, float] = field(default_factory=dict)
    series: list[Metric] = field(default_factory=list)
    points: dict[float, tuple[int, float]] = field(default_factory=dict)  # checkpoint fraction -> (step, FLOPs)
    saves: int = 0  # resume states written by this run, all attempts
    rng: dict[str, torch.Tensor] = field(default_factory=dict)  # every process's RNG states, by name


def resume_dir(run_dir: Path) -> Path:
    return Path(run_dir) / RESUME_DIR


def has_state(run_dir: Path) -> bool:
    return (resume_dir(run_dir) / STATE_FILE).is_file()


def save_state(run_dir: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer, loop: LoopState,
               plan_key: str) -> Path:
    """Write the resume state atomically; returns the folder."""
    folder = resume_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    tensors, aliases = _model_tensors(model)
    opt_tensors, opt_json = _optimizer_tensors(optimizer)
    tensors.update(opt_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    tensors.update({f"rng.loop.{k}": v for k, v in loop.rng.items()})
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    rows: dict[str, list[tuple[float, float, float, float]]] = {}
    order: list[str] = []
    for m in loop.series:  # one pass: float64 [n, 4] per name (step, value, flops, wall_s; NaN = none)
        rows.setdefault(m.name, []).append((m.step, m.value, _nan(m.flops), _nan(m.wall_s)))
        order.append(m.name)
    names = sorted(rows)
    for name in names:
        tensors[f"series.{name}"] = torch.tensor(rows[name], dtype=torch.float64)
    index = {name: i for i, name in enumerate(names)}
    tensors["series_order"] = torch.tensor([index[n] for n in order], dtype=torch.int32)  # their interleaving
    loop.saves += 1
    tensor_file = f"state-{loop.step:09d}-{uuid.uuid4().hex[:8]}.safetensors"
    tmp = folder / f".{tensor_file}.tmp-{os.getpid()}"
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
    _fsync(tmp)
    os.replace(tmp, folder / tensor_file)
    np_state = np.random.get_state()
    meta = {
        "format": FORMAT,
        "plan_key": plan_key,
        "tensors": tensor_file,
        "aliases": aliases,
        "optimizer": opt_json,
        "loop": {"step": loop.step, "tokens": loop.tokens, "wall_s": loop.wall_s, "window": loop.window,
                 "final": loop.final, "saves": loop.saves,
                 "points": [[f, s, fl] for f, (s, fl) in sorted(loop.points.items())]},
        "series_names": names,
        "rng_python": _jsonable(random.getstate()),
        "rng_numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
    }
    tmp_json = folder / f".{STATE_FILE}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp_json.write_text(json.dumps(meta), encoding="utf-8")
    _fsync(tmp_json)
    os.replace(tmp_json, folder / STATE_FILE)  # the commit point
    for old in folder.glob("state-*.safetensors"):  # earlier states are now superseded
        if old.name != tensor_file:
            old.unlink(missing_ok=True)
    return folder


def load_state(run_dir: Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               plan_key: str) -> LoopState | None:
    """Restore model, optimiser and RNG states in place and return the loop's counters.

    None when the run has no resume state. A state written for another plan (other steps,
    batch or budget) is a DataError: the run id should have differed.
    """
    folder = resume_dir(run_dir)
    if not (folder / STATE_FILE).is_file():
        return None
    try:
        meta = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        tensors = load_file(str(folder / meta["tensors"]))
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"the resume state in {folder} cannot be read ({exc}). Delete that folder to restart the "
                        f"run from step 0.") from None
    if meta.get("format") != FORMAT or meta.get("plan_key") != plan_key:
        raise DataError(f"the resume state in {folder} was written for another plan of this run. Delete that folder "
                        f"to restart the run from step 0.")
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    for alias, canonical in meta["aliases"].items():
        state[alias] = state[canonical]
    model.load_state_dict(state, strict=True)
    optimizer.load_state_dict(_optimizer_state(meta["optimizer"], tensors))
    torch.set_rng_state(tensors["rng.torch"])
    if torch.cuda.is_available():
        cuda = [tensors[f"rng.cuda.{i}"] for i in range(torch.cuda.device_count()) if f"rng.cuda.{i}" in tensors]
        if cuda:
            torch.cuda.set_rng_state_all(cuda)
    random.setstate(_tupled(meta["rng_python"]))
    np_state = meta["rng_numpy"]
    np.random.set_state((np_state[0], np.array(np_state[1], dtype=np.uint32), *np_state[2:]))
    loop_meta = meta["loop"]
    series = _series(meta, tensors)
    return LoopState(step=loop_meta["step"], tokens=loop_meta["tokens"], wall_s=loop_meta["wall_s"],
                     window=loop_meta["window"], final=loop_meta["final"], series=series,
                     points={f: (s, fl) for f, s, fl in loop_meta["points"]}, saves=loop_meta["saves"],
                     rng={k[len("rng.loop."):]: v for k, v in tensors.items() if k.startswith("rng.loop.")})


def plan_key(plan: Any) -> str:
    """What a state must match to be resumed: the plan's steps, batch, budget and schedule."""
    d = asdict(plan)
    return json.dumps({k: d[k] for k in ("budget_flops", "convention", "batch_size", "seq_len", "steps",
                                         "time_budget_s", "warmup_fraction")}, sort_keys=True)


# --- helpers -------------------------------------------------------------------------------------


def _model_tensors(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The state dict with each shared (tied) tensor stored once; `aliases` maps the others to it."""
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[int, tuple[int, ...], tuple[int, ...]], str] = {}
    for name, t in model.state_dict().items():
        key = (t.data_ptr(), tuple(t.shape), tuple(t.stride()))
        if t.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        tensors[f"model.{name}"] = t
    return tensors, {a: c for a, c in aliases.items()}


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    state_json: dict[str, dict[str, Any]] = {}
    for idx, entry in sd["state"].items():
        state_json[str(idx)] = {}
        for k, v in entry.items():
            if torch.is_tensor(v):
                tensors[f"optim.{idx}.{k}"] = v
                state_json[str(idx)][k] = None  # a tensor, in the safetensors file
            else:
                state_json[str(idx)][k] = v
    return tensors, {"state": state_json, "param_groups": sd["param_groups"]}


def _optimizer_state(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    state = {}
    for idx, entry in meta["state"].items():
        state[int(idx)] = {k: tensors[f"optim.{idx}.{k}"] if v is None else v for k, v in entry.items()}
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}


def _series(meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> list[Metric]:
    rows = {name: tensors[f"series.{name}"].tolist() for name in meta["series_names"]}
    cursor = dict.fromkeys(rows, 0)
    out = []
    order = tensors["series_order"].tolist() if "series_order" in tensors else []
    for i in order:
        name = meta["series_names"][i]
        step, value, flops, wall = rows[name][cursor[name]]
        cursor[name] += 1
        out.append(Metric(name, value, step=int(step), flops=_none(flops), wall_s=_none(wall)))
    return out


def _nan(x: float | None) -> float:
    return float("nan") if x is None else float(x)


def _none(x: float) -> float | None:
    return None if x != x else x


def _jsonable(obj: Any) -> Any:
    return [_jsonable(v) for v in obj] if isinstance(obj, (tuple, list)) else obj


def _tupled(obj: Any) -> Any:
    return tuple(_tupled(v) for v in obj) if isinstance(obj, list) else obj


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
