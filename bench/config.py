"""Experiment configuration: `bench.toml` -> frozen dataclasses, overridden by CLI flags.

Every error names the key and the file (and the line where it can be found), and lists the
valid choices with a "did you mean".
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
from bench.toml_compat import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Union

from bench.errors import ConfigError

DEFAULT_CONFIG = "bench.toml"
CONVENTIONS = ("paper", "executed")
RECIPES = ("paper", "crammed")  # pretrain.recipe: bench.objectives.recipe.RECIPES (kept in step by a test)


@dataclass(frozen=True)
class DataSettings:
    """Where pretraining text comes from and how it is tokenised."""

    corpus: str = "enwiki-2015-wikiextractor"  # a name under <data>/corpus/, a path, or "wikitext" (hub)
    vocab: str | None = None  # a name under <data>/vocab/, a path; unset = train WordPiece at the preset's size
    vocab_size: int | None = None  # unset = the size preset's
    max_documents: int | None = None  # read only the first N documents (unset = all)


@dataclass(frozen=True)
class PretrainSettings:
    """Pretraining optimiser and schedule; unset values come from the size preset."""

    lr: float | None = None
    batch_size: int | None = None
    seq_len: int | None = None
    warmup_fraction: float | None = None
    weight_decay: float = 0.01
    adam_eps: float = 1e-6
    max_grad_norm: float = 1.0
    seed: int = 0
    log_every: int = 10
    checkpoint_fractions: tuple[float, ...] = (1.0,)
    precision: str = "auto"  # auto (bf16 on a GPU that supports it; on a CPU only with native bf16 where measured faster: bench.train.hardware.CPU_BF16), fp32, bf16
    compile: bool | str = "auto"  # torch.compile the step: auto (on a GPU, falling back if it fails), true, false
    resume_every_steps: int = 200  # write the resume state every N steps (0 = never by count)
    resume_every_minutes: float = 10.0  # ... and every M minutes (0 = never by time); always on SIGINT/SIGTERM
    recipe: str = "paper"  # paper (post-LN, dropout 0.1, linear schedule) or crammed (pre-LN, no dropout, lr 1e-3, one-cycle triangle): bench.objectives.recipe


@dataclass(frozen=True)
class FinetuneSettings:
    """Fine-tuning protocol (the ELECTRA paper's); unset values come from the size preset."""

    lr: float | None = None
    batch_size: int | None = None
    epochs: float | None = None
    max_length: int | None = None
    max_train_examples: int | None = None
    warmup_fraction: float = 0.1
    weight_decay: float = 0.0
    layer_decay: float = 0.8
    dropout: float = 0.1


EXECUTORS = ("inline", "local", "slurm")


@dataclass(frozen=True)
class ExecutorSettings:
    """Where runs execute: `inline` (in `bench run` itself), or as jobs through submitit:
    `local` (processes on this machine) or `slurm` (a cluster; the results folder on a
    filesystem every node shares). `bench run` stays the only writer of the store."""

    kind: str = "inline"
    partition: str | None = None
    gpus_per_job: int = 0
    cpus_per_job: int | None = None
    time_limit_min: int = 1440  # a job that reaches it is requeued and resumes from its resume state
    account: str | None = None
    qos: str | None = None
    sbatch: tuple[str, ...] = ()  # more sbatch options, "key=value" (e.g. "constraint=a100")
    processes_per_job: int = 1  # > 1: each job is itself a DDP run over that many processes
    poll_s: float = 10.0  # how often the driver looks at its jobs
    # a job the scheduler no longer answers for (state UNKNOWN: no accounting answer, gone from squeue), or
    # that it says completed without a result file, is recorded failed after this many seconds
    lost_after_s: float = 300.0
    # jobs and their results are files under the results folder: one that another user may write
    # (group- or world-writable, or not yours) is refused unless this is true
    allow_shared_folder: bool = False


@dataclass(frozen=True)
class Experiment:
    """One validated experiment: what `bench run` does."""

    models: tuple[str, ...] = ("electra", "bert")
    task: str = "sst2"
    size: str | None = None  # unset = tiny without a GPU, small with one
    budget: str | float | None = None  # FLOPs, "electra-small@6.25%" or "20min"; unset = the size preset's
    budget_convention: str = "paper"
    seeds: int | None = None  # fine-tuning seeds; unset = the size preset's default
    pretrain_seeds: int = 1  # independent pretraining runs per model (pretrain.seed, +1, ...): the unit of a claim
    control: str | None = "scratch"  # a no-pretraining control added to every comparison
    curve: bool = False  # also fine-tune the checkpoints at 1/16..1/2 of the budget (a compute curve)
    trackers: tuple[str, ...] = ()  # experiment trackers (bench.tracking.TRACKERS): views of runs, never in their ids
    results: str = "results"
    data: str | None = None  # data dir; unset = $BENCH_DATA_DIR
    quiet: bool = False
    data_settings: DataSettings = field(default_factory=DataSettings)
    pretrain: PretrainSettings = field(default_factory=PretrainSettings)
    finetune: FinetuneSettings = field(default_factory=FinetuneSettings)
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)
    model_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    task_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    config_file: str | None = None
    suite: str | None = None  # the suite (bench/suites/NAME.toml or a path) layered over the config file
    from_cli: tuple[str, ...] = ()  # settings given as flags, so errors can point at the flag

    def where(self, key: str) -> str:
        """Where `key` was set: the flag, or the config file."""
        if key in self.from_cli:
            if key == "trackers":  # one --tracker flag per name
                return "--tracker"
            return f"--{key.replace('_', '-')}"
        return self.config_file or "the defaults"

    def backend_options(self, model: str) -> dict[str, Any]:
        """The keyword options `[models.<model>]` gives the backend (`base` names a variant's model)."""
        return {k: v for k, v in self.model_options.get(model, {}).items() if k != "base"}

    @property
    def data_dir(self) -> Path | None:
        value = self.data or os.environ.get("BENCH_DATA_DIR")
        return Path(value).expanduser() if value else None

    @property
    def results_dir(self) -> Path:
        return Path(self.results).expanduser()


# Top-level tables of bench.toml -> Experiment fields holding a settings dataclass.
_SECTIONS = {"data": "data_settings", "pretrain": "pretrain", "finetune": "finetune", "executor": "executor"}
_RUN_KEYS = ("models", "task", "size", "budget", "budget_convention", "seeds", "pretrain_seeds", "control", "curve", "results", "data",
             "quiet", "trackers")


def load_experiment(path: str | Path | None = None, overrides: dict[str, Any] | None = None, *,
                    suite: str | None = None, sized: bool = True) -> Experiment:
    """Read `path` (default ./bench.toml if present), layer `suite` over it, apply CLI `overrides`, validate.

    A suite (bench.suite) replaces the keys it sets, table by table ([models.X] and [tasks.X] whole);
    its errors name the suite's file and line. Its [size.<preset>] table for the size the run will use
    (the flag, [run] size, else bench.plan.default_size()) goes over its other tables; flags win over it.
    A budget named as a share of a reference run the suite gives the paper's total for becomes that
    share of the total (Suite.resolve_share). `sized=False` skips the size tables (and so the default
    size, which needs torch): for a caller that reads only the suite's models.
    """
    explicit = path is not None
    path = Path(path) if path is not None else Path(DEFAULT_CONFIG)
    raw: dict[str, Any] = {}
    text = ""
    if path.exists():
        text = path.read_text(encoding="utf-8")
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            m = re.search(r"at line (\d+)", str(exc))
            line = int(m.group(1)) if m else max(1, len(text.splitlines()))  # "at end of document": the last line
            raise ConfigError(f"{path}, line {line}: malformed TOML: {exc}. Fix the syntax there.") from None
    elif explicit:
        raise ConfigError(f"config file {path} does not exist (given with --config).")
    where = str(path) if text else "built-in defaults"
    config_file = str(path) if text else None
    kwargs = _experiment_kwargs(raw, text, where)
    spec = None
    if suite is not None:
        from bench.suite import read_suite

        spec, suite_raw, suite_text = read_suite(suite)
        _experiment_kwargs(suite_raw, suite_text, str(spec.path))  # the suite's own mistakes, with its lines
        raw = _layer(raw, suite_raw)
        if sized and spec.sizes:  # [size.<preset>] of the size this run uses, over the suite's other tables
            raw = _layer(raw, spec.size_tables(_run_size(raw, overrides)))
        where = f"{where} + suite {spec.path}" if text else str(spec.path)
        text = suite_text if not text else ""  # line numbers of a merged table would mislead
        kwargs = _experiment_kwargs(raw, text, where)
        kwargs["suite"] = suite
    kwargs["config_file"] = config_file
    given = tuple(k for k, v in (overrides or {}).items() if v is not None)
    kwargs["from_cli"] = given
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, name = key.rpartition("__")
        if section:  # a flag for a key of a table, e.g. executor__partition from --partition
            cls = _field_type(Experiment, _SECTIONS[section])
            flag = "--executor" if name == "kind" else f"--{name.replace('_', '-')}"
            current = kwargs.get(_SECTIONS[section], cls())
            kwargs[_SECTIONS[section]] = dataclasses.replace(current, **{name: _coerce(value, _field_type(cls, name), flag,
                                                                                         "the command line")})
            continue
        kwargs[key] = _coerce(value, _field_type(Experiment, key), f"--{key.replace('_', '-')}", "the command line")
    if spec is not None and spec.reference_flops:  # "electra-small@6.25%": a share of the paper's total
        kwargs["budget"] = spec.resolve_share(kwargs.get("budget"), kwargs.get("budget_convention", "paper"))
    exp = Experiment(**kwargs)
    validate(exp, where, text)
    return exp


def _run_size(raw: dict[str, Any], overrides: dict[str, Any] | None) -> str:
    """The size preset a run of `raw` with `overrides` uses: the flag, [run] size, else the machine's default."""
    size = (overrides or {}).get("size")
    if size is None:
        size = raw.get("run", {}).get("size")
    if size is None:
        from bench.plan import default_size

        size = default_size()
    return str(size)


def _layer(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """`top`'s keys over `base`'s, table by table; a [models.X] / [tasks.X] table of `top` replaces base's whole."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for table, values in top.items():
        if isinstance(values, dict) and isinstance(out.get(table), dict):
            out[table].update(values)
        else:
            out[table] = values
    return out


def _experiment_kwargs(raw: dict[str, Any], text: str, where: str) -> dict[str, Any]:
    known_tables = ("run", *_SECTIONS, "models", "tasks")
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known_tables:
            raise ConfigError(_unknown_key_msg(key, known_tables, where, text, section=None))
        if not isinstance(value, dict):
            raise ConfigError(f"{where}{_line(text, None, key)}: `{key}` must be a table ([{key}]).")
    for key, value in raw.get("run", {}).items():
        if key not in _RUN_KEYS:
            raise ConfigError(_unknown_key_msg(key, _RUN_KEYS, where, text, section="run"))
        kwargs[key] = _coerce(value, _field_type(Experiment, key), f"run.{key}", where + _line(text, "run", key))
    for section, attr in _SECTIONS.items():
        table = raw.get(section, {})
        cls = _field_type(Experiment, attr)
        names = [f.name for f in dataclasses.fields(cls)]
        values = {}
        for key, value in table.items():
            if key not in names:
                raise ConfigError(_unknown_key_msg(key, names, where, text, section=section))
            values[key] = _coerce(value, _field_type(cls, key), f"{section}.{key}", where + _line(text, section, key))
        kwargs[attr] = cls(**values)
    models = raw.get("models", {})
    for name, opts in models.items():
        if not isinstance(opts, dict):
            raise ConfigError(f"{where}{_line(text, 'models', name)}: [models.{name}] must be a table of options.")
    kwargs["model_options"] = {k: dict(v) for k, v in models.items()}
    tasks = raw.get("tasks", {})
    for name, opts in tasks.items():
        if not isinstance(opts, dict):
            raise ConfigError(f"{where}{_line(text, 'tasks', name)}: [tasks.{name}] must be a table.")
    kwargs["task_settings"] = {k: dict(v) for k, v in tasks.items()}
    return kwargs


# Allowed ranges of numeric settings: (section, key) -> (check, what a valid value looks like).
# Unset (None) values come from the size preset and are always valid.
def _positive(v: float) -> bool:
    return math.isfinite(v) and v > 0


def _non_negative(v: float) -> bool:
    return math.isfinite(v) and v >= 0


def _share(v: float) -> bool:
    return 0 <= v < 1


RANGES: dict[tuple[str, str], tuple[Callable[[Any], bool], str]] = {
    ("run", "seeds"): (lambda v: v >= 1, "an integer >= 1, e.g. 3"),
    ("run", "pretrain_seeds"): (lambda v: v >= 1, "an integer >= 1 (independent pretraining runs per model), e.g. 3"),
    ("pretrain", "lr"): (_positive, "a positive, finite number, e.g. 5e-4"),
    ("pretrain", "batch_size"): (lambda v: v >= 1, "an integer >= 1, e.g. 32"),
    ("pretrain", "seq_len"): (lambda v: v >= 8, "an integer >= 8, e.g. 128"),
    ("pretrain", "warmup_fraction"): (_share, "a share of the run in [0, 1), e.g. 0.1"),
    ("pretrain", "weight_decay"): (_non_negative, "a number >= 0, e.g. 0.01"),
    ("pretrain", "adam_eps"): (_positive, "a positive number, e.g. 1e-6"),
    ("pretrain", "max_grad_norm"): (_non_negative, "a number >= 0 (0 = no clipping), e.g. 1.0"),
    ("pretrain", "seed"): (lambda v: v >= 0, "an integer >= 0"),
    ("pretrain", "log_every"): (lambda v: v >= 1, "an integer >= 1, e.g. 10"),
    ("pretrain", "resume_every_steps"): (lambda v: v >= 0, "an integer >= 0 (0 = only by time and on signals)"),
    ("pretrain", "resume_every_minutes"): (_non_negative, "a number of minutes >= 0 (0 = only by steps)"),
    ("finetune", "lr"): (_positive, "a positive, finite number, e.g. 3e-4"),
    ("finetune", "batch_size"): (lambda v: v >= 1, "an integer >= 1, e.g. 32"),
    ("finetune", "epochs"): (_positive, "a positive number of epochs, e.g. 3"),
    ("finetune", "max_length"): (lambda v: v >= 4, "an integer >= 4, e.g. 128"),
    ("finetune", "max_train_examples"): (lambda v: v >= 0, "an integer >= 0 (0 = all)"),
    ("finetune", "warmup_fraction"): (_share, "a share of the run in [0, 1), e.g. 0.1"),
    ("finetune", "weight_decay"): (_non_negative, "a number >= 0"),
    ("finetune", "layer_decay"): (lambda v: 0 < v <= 1, "a factor in (0, 1], e.g. 0.8"),
    ("finetune", "dropout"): (lambda v: 0 <= v < 1, "a probability in [0, 1), e.g. 0.1"),
    ("data", "vocab_size"): (lambda v: v >= 100, "an integer >= 100, e.g. 8192"),
    ("data", "max_documents"): (lambda v: v >= 1, "an integer >= 1 (leave it out for all)"),
    ("executor", "gpus_per_job"): (lambda v: v >= 0, "an integer >= 0"),
    ("executor", "cpus_per_job"): (lambda v: v >= 1, "an integer >= 1"),
    ("executor", "time_limit_min"): (lambda v: v >= 1, "minutes >= 1, e.g. 1440"),
    ("executor", "processes_per_job"): (lambda v: v >= 1, "an integer >= 1"),
    ("executor", "poll_s"): (_positive, "seconds > 0, e.g. 10"),
    ("executor", "lost_after_s"): (_positive, "seconds > 0, e.g. 300"),
}


def check_range(section: str, key: str, value: Any, where: str) -> None:
    """A ConfigError naming `where` (file and line, or flag) when `value` is outside RANGES."""
    check, valid = RANGES[(section, key)]
    if value is not None and not check(value):
        raise ConfigError(f"{where}: {section}.{key} = {value!r} is out of range: give {valid}.")


def validate(exp: Experiment, where: str, text: str = "") -> None:
    """Checks that need more than types. Names are checked later, against the registries."""
    if not exp.models:
        raise ConfigError(f"{where}: `run.models` is empty; name at least one model (see `bench list`).")
    if exp.budget_convention not in CONVENTIONS:
        raise ConfigError(
            f"{where}{_line(text, 'run', 'budget_convention')}: run.budget_convention = {exp.budget_convention!r}; "
            f"choose one of {', '.join(CONVENTIONS)}."
        )
    if exp.budget is not None:
        from bench.train.budget import parse_budget

        parse_budget(exp.budget, convention=exp.budget_convention,
                     where="--budget" if "budget" in exp.from_cli else f"{where}{_line(text, 'run', 'budget')}: run.budget")
    for (section, key) in RANGES:
        value = getattr(exp, key) if section == "run" else getattr(getattr(exp, _SECTIONS[section]), key)
        place = exp.where(key) if section == "run" and key in exp.from_cli else where + _line(text, section, key)
        check_range(section, key, value, place)
    fr = exp.pretrain.checkpoint_fractions
    if not fr or any(not 0 < f <= 1 for f in fr):
        raise ConfigError(f"{where}{_line(text, 'pretrain', 'checkpoint_fractions')}: pretrain.checkpoint_fractions "
                          f"must be shares of the budget in (0, 1], got {list(fr)}.")
    if exp.executor.kind not in EXECUTORS:
        raise ConfigError(f"{where}{_line(text, 'executor', 'kind')}: executor.kind = {exp.executor.kind!r}; choose "
                          f"one of {', '.join(EXECUTORS)}.")
    bad = [opt for opt in exp.executor.sbatch if "=" not in opt or opt.startswith("-")]
    if bad:
        raise ConfigError(f"{where}{_line(text, 'executor', 'sbatch')}: executor.sbatch entries are sbatch options as "
                          f"\"key=value\" (e.g. \"constraint=a100\"), got {bad[0]!r}.")
    if exp.pretrain.compile not in (True, False, "auto", "true", "false"):
        raise ConfigError(f"{where}{_line(text, 'pretrain', 'compile')}: pretrain.compile = "
                          f"{exp.pretrain.compile!r}; choose \"auto\", true or false.")
    if exp.trackers:
        from bench.tracking import check_names

        check_names(exp.trackers, exp.where("trackers") if "trackers" in exp.from_cli
                    else f"{where}{_line(text, 'run', 'trackers')}: run.trackers")
    if exp.pretrain.recipe not in RECIPES:
        close = difflib.get_close_matches(exp.pretrain.recipe, list(RECIPES), n=1)
        raise ConfigError(f"{where}{_line(text, 'pretrain', 'recipe')}: pretrain.recipe = {exp.pretrain.recipe!r}; "
                          f"choose {' or '.join(RECIPES)}." + (f" Did you mean {close[0]!r}?" if close else ""))
    if exp.pretrain.precision not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"{where}{_line(text, 'pretrain', 'precision')}: pretrain.precision = "
                          f"{exp.pretrain.precision!r}; choose auto, fp32 or bf16.")


# --- typing helpers -----------------------------------------------------------------------


def _field_type(cls: type, name: str) -> Any:
    hints = typing.get_type_hints(cls)
    if name not in hints:
        raise ConfigError(f"unknown setting {name!r}")
    return hints[name]


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is tuple:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    return {str: "a string", int: "an integer", float: "a number", bool: "true/false"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any, key: str, where: str) -> Any:
    """Check `value` against the annotation `tp`; CLI strings are parsed ("a,b" lists, numbers)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        errors = []
        for a in args:
            try:
                return _coerce(value, a, key, where)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is tuple:
        (inner, *_rest) = typing.get_args(tp)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: `{key}` must be {_type_name(tp)}, got {value!r}.")
        return tuple(_coerce(v, inner, key, where) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: `{key}` must be a table, got {value!r}.")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{where}: `{key}` must be {_type_name(tp)}, got {value!r}.")


def _line(text: str, section: str | None, key: str) -> str:
    """', line N' where `key` is set inside [section] of the TOML text, or '' if not found."""
    if not text:
        return ""
    current = None
    for i, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        m = re.match(r"\[\s*([^\]]+?)\s*\]", stripped)
        if m:
            current = m.group(1)
            if section is None and current == key:
                return f", line {i}"
            if section is not None and current == f"{section}.{key}":
                return f", line {i}"
            continue
        if current == section and re.match(rf"{re.escape(key)}\s*=", stripped):
            return f", line {i}"
    return ""


def _unknown_key_msg(key: str, known: typing.Sequence[str], where: str, text: str, section: str | None) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    full = f"{section}.{key}" if section else f"[{key}]"
    return f"{where}{_line(text, section, key)}: unknown key {full}.{hint} Valid keys{' in [' + section + ']' if section else ''}: {', '.join(known)}."
