"""MkDocs hook: reference tables generated from the code that defines them, so the docs cannot drift.

A page asks for a table with a marker comment on a line of its own:

    <!-- bench:config -->      every bench.toml key: type, default, allowed range (bench/config.py)
    <!-- bench:sizes -->       the size presets and their defaults (models/sizes.py)
    <!-- bench:schema -->      the results store's SQL schema (bench/results/store.py SCHEMA)
    <!-- bench:columns -->     the comparison table's columns (bench/results/tables.py COLUMNS)
    <!-- bench:leaderboard --> the leaderboard's leading columns (tables.LEADERBOARD_HEAD)
    <!-- bench:runs -->        bench.load(...).runs columns (bench/results/tidy.py RUN_COLUMNS)
    <!-- bench:metrics -->     bench.load(...).metrics columns (tidy.METRIC_COLUMNS)

A column the code has and this file does not describe, or a setting that maps to no size-preset
field, fails the build (`mkdocs build --strict` in CI): describe it here first. tests/test_docs.py
imports this file for the same tables.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any

MARKER = re.compile(r"^<!-- bench:([a-z]+) -->$", re.M)


class DocsDriftError(Exception):
    """The code has something the generated reference cannot describe."""


# --- bench.toml ------------------------------------------------------------------------------------

# Settings left unset take the size preset's value: the SizePreset field that gives it.
PRESET_FIELDS = {
    ("run", "size"): None,
    ("run", "budget"): "budget_flops",
    ("run", "seeds"): "seeds",
    ("data", "vocab_size"): "vocab_size",
    ("pretrain", "lr"): "pretrain_lr",
    ("pretrain", "batch_size"): "pretrain_batch",
    ("pretrain", "seq_len"): "seq_len",
    ("pretrain", "warmup_fraction"): "warmup_fraction",
    ("finetune", "lr"): "finetune_lr",
    ("finetune", "batch_size"): "finetune_batch",
    ("finetune", "epochs"): "finetune_epochs",
    ("finetune", "max_length"): "finetune_max_length",
    ("finetune", "max_train_examples"): "finetune_max_train",
}
# Choices that bench/config.py checks in validate() rather than in RANGES.
CHOICES = {
    ("run", "budget_convention"): "CONVENTIONS",
    ("executor", "kind"): "EXECUTORS",
}
OTHER_RULES = {
    ("pretrain", "precision"): "`auto`, `fp32` or `bf16`",
    ("pretrain", "compile"): "`\"auto\"`, `true` or `false`",
    ("pretrain", "checkpoint_fractions"): "shares of the budget in (0, 1]",
    ("executor", "sbatch"): "sbatch options as `\"key=value\"`",
    ("run", "trackers"): "`tensorboard`, `mlflow`, `wandb`, `aim`",
    ("run", "budget"): "FLOPs (`3e13`), a share of a paper run (`electra-small@6.25%`) or wall-clock (`20min`)",
    ("run", "size"): "a size preset (below)",
}


ABOUT = {  # keys whose field has no comment in bench/config.py
    ("run", "models"): "models to compare (see `bench list`; also `hf:<hub id>`, `path:<dir>`)",
    ("run", "task"): "task to fine-tune on, or `glue` for every GLUE task present",
    ("run", "budget_convention"): "the FLOP convention the budget is counted in",
    ("run", "results"): "results folder: `bench.db` and the run folders",
    ("run", "quiet"): "no progress bars",
}


def _comments(cls: type) -> dict[str, str]:
    """Each field's trailing `# comment` in the class's source."""
    out = {}
    for line in inspect.getsource(cls).splitlines():
        m = re.match(r"\s+(\w+): [^=]+=.*?#\s*(.+)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def _toml(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, tuple):
        return "`[" + ", ".join(_toml(v).strip("`") for v in value) + "]`"
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def config_rows() -> list[dict[str, str]]:
    """One row per bench.toml key: table, key, type, default, allowed values, what it is."""
    from bench import config
    from models.sizes import SIZES, SizePreset

    preset_fields = {f.name for f in dataclasses.fields(SizePreset)}
    tables = [("run", config.Experiment, config._RUN_KEYS)]
    tables += [(section, config._field_type(config.Experiment, attr), None) for section, attr in config._SECTIONS.items()]
    rows = []
    for section, cls, keys in tables:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        comments = _comments(cls)
        for name in keys or list(fields):
            if name not in fields:
                raise DocsDriftError(f"[{section}] {name}: no such field of {cls.__name__}")
            f = fields[name]
            default = _default(f)
            text = _toml(default)
            source = PRESET_FIELDS.get((section, name), "")
            if default is None and source:
                if source not in preset_fields:
                    raise DocsDriftError(f"[{section}] {name}: SizePreset has no field {source!r}")
                text = "the preset's: " + ", ".join(f"{p} {getattr(s, source):g}" for p, s in SIZES.items())
            allowed = ""
            if (section, name) in config.RANGES:
                allowed = config.RANGES[(section, name)][1]
            elif (section, name) in CHOICES:
                allowed = ", ".join(f"`{c}`" for c in getattr(config, CHOICES[(section, name)]))
            elif (section, name) in OTHER_RULES:
                allowed = OTHER_RULES[(section, name)]
            rows.append({"table": section, "key": name, "type": config._type_name(config._field_type(cls, name)).replace("a list of a string", "a list of strings"),
                         "default": text, "allowed": allowed, "about": comments.get(name, ABOUT.get((section, name), ""))})
    return rows


def config_markdown() -> str:
    out = []
    current = None
    for r in config_rows():
        if r["table"] != current:
            current = r["table"]
            out += ["", f"### `[{current}]`", "", "| key | type | default | allowed | about |",
                    "| --- | --- | --- | --- | --- |"]
        out.append(f"| `{r['key']}` | {_cell(r['type'])} | {_cell(r['default'])} | {_cell(r['allowed'])} | "
                   f"{_cell(r['about'])} |")
    return "\n".join(out).strip() + "\n"


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, dict):  # e.g. per task kind: {"span": {"epochs": 1, ...}}
        return "<br>".join(f"{k}: " + (", ".join(f"{a} {b}" for a, b in w.items()) if isinstance(w, dict) else str(w))
                           for k, w in v.items()) or "-"
    return _cell(str(v))


def sizes_markdown() -> str:
    from models.sizes import SIZES, SizePreset

    names = [f.name for f in dataclasses.fields(SizePreset) if f.name not in ("name", "description")]
    head = "| field | " + " | ".join(f"`{n}`" for n in SIZES) + " |"
    out = [head, "|" + " --- |" * (len(SIZES) + 1)]
    out.append("| description | " + " | ".join(_cell(s.description) for s in SIZES.values()) + " |")
    for n in names:
        out.append(f"| `{n}` | " + " | ".join(_value(getattr(s, n)) for s in SIZES.values()) + " |")
    return "\n".join(out) + "\n"


# --- the store and the tables ----------------------------------------------------------------------

COMPARISON = {
    "model": "backend (see `bench list`)",
    "size": "size preset",
    "task": "task",
    "budget_flops": "the pretraining budget every model in the comparison got (0 for the no-pretraining control)",
    "pretrain_steps": "optimiser steps the budget bought (the analytic cost per step decides)",
    "pretrain_flops": "FLOPs spent, in the budget's convention: within one step of the budget",
    "pretrain_flops_paper": "the same FLOPs in the `paper` convention",
    "pretrain_flops_executed": "the same FLOPs in the `executed` convention",
    "pretrain_wall_s": "pretraining seconds up to this point (a curve point: up to its checkpoint)",
    "tokens_per_s": "non-padding pretraining tokens per second",
    "finetune_wall_s": "median per seed of fine-tuning plus evaluation seconds",
    "score_median": "the task's headline dev metric, median over every fine-tuning run of the row (a failed "
                    "configuration: the reason)",
    "score_min": "its minimum",
    "score_max": "its maximum",
    "pretrain_runs": "independent pretraining runs behind the row (`--pretrain-seeds`)",
    "pretrain_seeds": "which pretraining seeds they were",
    "seeds": "fine-tuning seeds per pretraining run, the fewest any run has (0: no result)",
    "finetune": "the fine-tuning regime, training examples x epochs (the examples a run trained on where the "
                "task's train split is smaller than the cap; rows of another regime, e.g. a suite's "
                "low-resource twin in the same store, are other comparisons: never pooled, claimed apart)",
    "also": "the task's other metrics, median over the runs (SQuAD's `exact_match` beside its F1, MRPC's `accuracy`)",
    "not_learned": "fine-tuning runs that did not learn, with the commonest reason (`3/3: every dev prediction "
                   "is one class`); empty when all learned",
}
LEADERBOARD = {
    "rank": "place, best first",
    "model": "backend",
    "size": "size preset",
    "budget_flops": "the pretraining budget",
    "params": "encoder parameters (what is fine-tuned)",
    "pretrain_flops": "FLOPs spent in pretraining",
    "pretrain_wall_s": "pretraining seconds",
    "tokens_per_s": "pretraining tokens per second",
}
RUNS = {
    "run_id": "the run's id (a hash of its spec, code and data)",
    "kind": "`pretrain` or `finetune`",
    "model": "backend", "task": "task (empty for pretraining)", "size": "size preset",
    "budget": "pretraining budget", "seed": "fine-tuning seed (empty for pretraining)",
    "pretrain_seed": "the pretraining run's seed (a fine-tuning run: its pretraining run's)",
    "parent_id": "a fine-tuning run's pretraining run",
    "status": "`queued`, `running`, `done` or `failed`",
    "attempts": "claims taken on the run (a resumed run counts 2)",
    "error": "a failed run's error",
    "started_at": "when it started (ISO time)", "finished_at": "when it finished",
    "wall_s": "`finished_at - started_at`, seconds",
    "git_sha": "the repository's commit", "code_version": "the hash of the harness code that ran it",
}
METRICS = {
    "run_id": "the run (join `runs` on it)",
    "name": "the metric (`loss`, `disc_loss`, `accuracy`, `flops_paper`, ...)",
    "step": "the step of a series point; NaN for a final scalar",
    "value": "its value",
    "flops": "pretraining FLOPs at that point, where the series records them",
    "wall_s": "seconds at that point, where the series records them",
}


def columns_markdown(columns: list[str], described: dict[str, str], where: str) -> str:
    missing = [c for c in columns if c not in described]
    if missing:
        raise DocsDriftError(f"{where} has columns the docs do not describe: {missing}; add them to docs/hooks.py")
    rows = ["| column | meaning |", "| --- | --- |"] + [f"| `{c}` | {_cell(described[c])} |" for c in columns]
    return "\n".join(rows) + "\n"


def schema_markdown() -> str:
    from bench.results import store

    return (f"Schema version {store.SCHEMA_VERSION} (`PRAGMA user_version`), file `<results>/{store.DB_NAME}`:\n\n"
            f"```sql\n{store.SCHEMA.strip()}\n```\n")


def generated(name: str) -> str:
    from bench.results import tables, tidy

    makers = {
        "config": config_markdown,
        "sizes": sizes_markdown,
        "schema": schema_markdown,
        "columns": lambda: columns_markdown(tables.COLUMNS, COMPARISON, "bench/results/tables.py COLUMNS"),
        "leaderboard": lambda: columns_markdown(tables.LEADERBOARD_HEAD, LEADERBOARD,
                                                "bench/results/tables.py LEADERBOARD_HEAD"),
        "runs": lambda: columns_markdown(tidy.RUN_COLUMNS, RUNS, "bench/results/tidy.py RUN_COLUMNS"),
        "metrics": lambda: columns_markdown(tidy.METRIC_COLUMNS, METRICS, "bench/results/tidy.py METRIC_COLUMNS"),
    }
    if name not in makers:
        raise DocsDriftError(f"unknown generated table <!-- bench:{name} -->; known: {', '.join(makers)}")
    return makers[name]()


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs event: replace each marker with its table; root files' links into docs/ resolve on the site."""
    if page.file.src_uri == "changelog.md":  # CHANGELOG.md, included: its links are relative to the root
        markdown = markdown.replace("](docs/", "](")
    return MARKER.sub(lambda m: generated(m.group(1)), markdown)
