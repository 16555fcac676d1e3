"""Experiment -> the list of runs it needs, each with a stable id.

A run's id is a hash of its canonical spec and the code version, so the same command on the
same code finds its finished runs in the store and recomputes nothing. The code version covers
the harness and its built-ins; a plug-in's code enters through the spec's `code` field (its
entry point, distribution, version and source hash: `bench.registry.Registry.code`), so an
edited or upgraded plug-in makes new runs too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from bench.train.budget import Budget, parse_budget
from bench.config import Experiment
from bench.environment import code_version
from bench.errors import ConfigError
from bench.registry import MODELS, TASKS
from bench.results.store import canonical_json
from models.sizes import SizePreset, get_size

CURVE_FRACTIONS = (0.0625, 0.125, 0.25, 0.5, 1.0)  # the paper's Table 1 rows: 1/16 ... 1 of the budget
EXTERNAL_PREFIXES = ("hf:", "path:")


def run_id(prefix: str, spec: dict[str, Any]) -> str:
    digest = hashlib.sha256((canonical_json(spec) + code_version()).encode()).hexdigest()
    return f"{prefix}-{digest[:12]}"


@dataclass(frozen=True)
class PretrainRun:
    model: str
    size: str
    budget: Budget
    convention: str
    data: dict[str, Any]  # DataSpec fields
    lr: float
    batch_size: int
    seq_len: int
    warmup_fraction: float
    weight_decay: float
    adam_eps: float
    max_grad_norm: float
    seed: int
    checkpoint_fractions: tuple[float, ...]
    precision: str
    options: dict[str, Any]
    pretrains: bool = True
    external: str | None = None  # "hf:<id>" or "path:<dir>": an existing checkpoint, not trained here
    identity: dict[str, Any] = field(default_factory=dict)  # the data it runs on (bench.preflight fills it)
    code: str = ""  # a plug-in backend's code fingerprint (MODELS.code); "" for built-ins
    recipe: str = "paper"  # pretrain.recipe (bench.objectives.recipe): the same for every backend of a plan

    def spec(self) -> dict[str, Any]:
        d = _without_empty_code(dataclasses.asdict(self))
        d["budget"] = dataclasses.asdict(self.budget)
        if d.get("recipe") == "paper":  # the default recipe is what every run before recipes ran: same ids
            d.pop("recipe")
        return d

    @property
    def id(self) -> str:
        return run_id("pt", self.spec())


@dataclass(frozen=True)
class FinetuneRun:
    model: str
    size: str
    task: str
    seed: int
    pretrain_id: str
    fraction: float  # which checkpoint of the pretraining run (share of its budget)
    settings: dict[str, Any]  # FinetuneConfig fields
    task_data: str = ""  # fingerprint of the task's data files (bench.preflight fills it)
    code: str = ""  # a plug-in task's code fingerprint (TASKS.code); the backend's is in pretrain_id

    def spec(self) -> dict[str, Any]:
        return _without_empty_code(dataclasses.asdict(self))

    @property
    def id(self) -> str:
        return run_id("ft", self.spec())


def _without_empty_code(spec: dict[str, Any]) -> dict[str, Any]:
    """Built-ins have no `code` of their own (code_version() covers them): their specs stay as they were."""
    if not spec.get("code"):
        spec.pop("code", None)
    return spec


@dataclass(frozen=True)
class Plan:
    experiment: Experiment
    size: SizePreset
    budget: Budget
    task_names: tuple[str, ...]
    pretrain_runs: tuple[PretrainRun, ...]
    finetune_runs: tuple[FinetuneRun, ...]


def default_size() -> str:
    return "small" if torch.cuda.is_available() else "tiny"


def plan_experiment(exp: Experiment, *, curve: bool = False, epochs: float | None = None,
                    tasks: tuple[str, ...] | None = None) -> Plan:
    """Validate names against the registries and expand models x tasks x seeds into runs."""
    from bench.objectives.recipe import apply_recipe

    # the recipe applied to the preset (dropout, lr, warm-up, pre-LN, schedule): every backend is built from it
    size = apply_recipe(get_size(exp.size or default_size(), where=exp.where("size")), exp.pretrain.recipe)
    budget = parse_budget(exp.budget if exp.budget is not None else size.budget_flops,
                          convention=exp.budget_convention, where=f"{exp.where('budget')}: budget")
    seeds = exp.seeds or size.seeds
    names = list(exp.models)
    if exp.control and exp.control not in names:
        names.append(exp.control)
    for name in names:
        if not name.startswith(EXTERNAL_PREFIXES):
            MODELS.get(name, where=exp.where("models") if name in exp.models else exp.where("control"))
    for name in exp.model_options:
        MODELS.get(name, where=f"[models.{name}] in {exp.config_file}")
    task_names = tasks or (exp.task,)
    for t in task_names:
        TASKS.get(t, where=exp.where("task"))

    data = {
        "corpus": exp.data_settings.corpus,
        "vocab": exp.data_settings.vocab,
        "vocab_size": _first(exp.data_settings.vocab_size, size.vocab_size),
        "seq_len": _first(exp.pretrain.seq_len, size.seq_len),
        "max_documents": exp.data_settings.max_documents,
    }
    fractions = tuple(sorted(set(exp.pretrain.checkpoint_fractions) | set(CURVE_FRACTIONS)))
    pretrain_runs = []
    # an external checkpoint is one checkpoint: replicated pretraining applies to what is trained (or initialised) here
    for name, k in ((n, k) for n in names for k in range(1 if n.startswith(EXTERNAL_PREFIXES) else exp.pretrain_seeds)):
        external = name if name.startswith(EXTERNAL_PREFIXES) else None
        backend = None if external else MODELS.get(name)
        pretrains = bool(backend is not None and getattr(backend, "pretrains", True))
        options = exp.backend_options(name)
        pretrain_runs.append(PretrainRun(
            model=name, size=size.name, budget=budget if pretrains else Budget("flops", 0.0, "0"),
            convention=exp.budget_convention, data=data if not external else {},
            lr=_first(exp.pretrain.lr, size.pretrain_lr), batch_size=_first(exp.pretrain.batch_size, size.pretrain_batch),
            seq_len=data["seq_len"], warmup_fraction=_first(exp.pretrain.warmup_fraction, size.warmup_fraction),
            weight_decay=exp.pretrain.weight_decay, adam_eps=exp.pretrain.adam_eps,
            max_grad_norm=exp.pretrain.max_grad_norm, seed=exp.pretrain.seed + k,
            checkpoint_fractions=fractions if pretrains else (1.0,), precision=exp.pretrain.precision,
            options=options, pretrains=pretrains, external=external, code="" if external else MODELS.code(name),
            recipe=exp.pretrain.recipe if not external else "paper",
        ))

    where = exp.config_file or "the defaults"
    if data["seq_len"] > size.max_position:
        raise ConfigError(f"{where}: pretrain.seq_len = {data['seq_len']} exceeds the {size.name} preset's "
                          f"{size.max_position} positions; give at most {size.max_position}.")
    world = world_size()
    batch = pretrain_runs[0].batch_size
    if batch % world:
        raise ConfigError(f"{where}: pretrain.batch_size = {batch} (the global batch) is not divisible by the "
                          f"{world} processes of this launch; give a multiple of {world}.")
    settings_by_task = {task: checked_finetune_settings(exp, size, task, epochs=epochs, world=world)
                        for task in task_names}
    task_code = {task: TASKS.code(task) for task in task_names}

    finetune_runs = []
    for pt in pretrain_runs:
        points = pt.checkpoint_fractions if (curve and pt.pretrains) else (1.0,)
        for task in task_names:
            settings = settings_by_task[task]
            for fraction in points:
                for seed in range(seeds):
                    finetune_runs.append(FinetuneRun(model=pt.model, size=size.name, task=task, seed=seed,
                                                     pretrain_id=pt.id, fraction=fraction, settings=settings,
                                                     code=task_code[task]))
    return Plan(exp, size, budget, tuple(task_names), tuple(pretrain_runs), tuple(finetune_runs))


def world_size() -> int:
    """Processes of this launch (torchrun / accelerate set WORLD_SIZE); 1 when run plainly."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def checked_finetune_settings(exp: Experiment, size: SizePreset, task: str, *, epochs: float | None,
                              world: int = 1) -> dict[str, Any]:
    """`finetune_settings`, checked now, so a bad fine-tuning value fails before any pretraining."""
    from bench.train.finetune import FinetuneConfig

    s = finetune_settings(exp, size, task, epochs=epochs)
    where = exp.config_file or "the defaults"
    fields = {f.name for f in dataclasses.fields(FinetuneConfig)}
    try:
        FinetuneConfig(**{k: v for k, v in s.items() if k in fields})
    except ConfigError as exc:
        raise ConfigError(f"{where}: task {task}: {exc}; set it in [finetune] or [tasks.{task}].") from None
    except TypeError as exc:
        raise ConfigError(f"{where}: [tasks.{task}]: {exc}") from None
    if s["max_length"] > size.max_position:
        raise ConfigError(f"{where}: task {task}: fine-tuning max_length = {s['max_length']} exceeds the {size.name} "
                          f"preset's {size.max_position} positions; give at most {size.max_position}.")
    if s["batch_size"] % world:
        raise ConfigError(f"{where}: task {task}: fine-tuning batch_size = {s['batch_size']} is not divisible by the "
                          f"{world} processes of this launch; give a multiple of {world}.")
    return s


def finetune_settings(exp: Experiment, size: SizePreset, task: str, *, epochs: float | None = None) -> dict[str, Any]:
    """The paper's protocol, then the size preset, the task's own overrides, bench.toml, the CLI."""
    spec = TASKS.get(task).spec
    ft = exp.finetune
    s: dict[str, Any] = {
        "lr": size.finetune_lr,
        "batch_size": size.finetune_batch,
        "epochs": size.finetune_epochs,
        "max_length": size.finetune_max_length,
        "max_train_examples": size.finetune_max_train,
        "warmup_fraction": ft.warmup_fraction,
        "weight_decay": ft.weight_decay,
        "layer_decay": ft.layer_decay,
        "dropout": ft.dropout,
    }
    s.update(spec.finetune_overrides)
    kind = getattr(spec, "kind", "sentence")
    if kind != "sentence":  # token and span tasks: the size preset's caps (models/sizes.py), over the task's protocol
        s.setdefault("max_eval_examples", 0)
        s.update(size.finetune_kind_caps.get(kind, {}))
    for key in ("lr", "batch_size", "epochs", "max_length", "max_train_examples"):
        if getattr(ft, key) is not None:
            s[key] = getattr(ft, key)
    for key, value in exp.task_settings.get(task, {}).items():
        if key in s:
            s[key] = value
    if epochs is not None:
        s["epochs"] = epochs
    return s


def _first(*values: Any) -> Any:
    return next(v for v in values if v is not None)
