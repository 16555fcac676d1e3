"""What bench.toml adds to the registries: tasks declared with an `adapter`, model variants with a `base`.

Below the runner and the executors (both call it: the driver before planning, a job on its node
before running), so neither imports the other for it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bench.config import Experiment, FinetuneSettings
from bench.errors import ConfigError
from bench.registry import MODELS, TASKS

FINETUNE_KEYS = tuple(f.name for f in dataclasses.fields(FinetuneSettings))


def register_config_entries(exp: Experiment) -> None:
    """Add what bench.toml declares to the registries: tasks ([tasks.<name>] with an `adapter`)
    and model variants ([models.<name>] with a `base`)."""
    register_config_models(exp)
    where = exp.config_file or "bench.toml"
    for name, table in exp.task_settings.items():
        adapter_keys = {k: v for k, v in table.items() if k not in FINETUNE_KEYS}
        if "adapter" in table:
            from tasks.table import table_task_from_config

            task = table_task_from_config(name, adapter_keys, Path(where))
            TASKS.add(name, task, description=task.spec.description or f"{table['adapter']} task from {where}",
                      source="bench.toml")
        elif adapter_keys:
            if name not in TASKS:
                raise ConfigError(f"{where}: [tasks.{name}] declares no `adapter` and {name!r} is not a registered "
                                  f"task. Add adapter = \"csv\" (or tsv, jsonl) with train, dev, text and label, "
                                  f"or use one of: {', '.join(TASKS.names())}.")
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(adapter_keys))} in [tasks.{name}]; a "
                              f"registered task takes only fine-tuning settings: {', '.join(FINETUNE_KEYS)}.")


def register_config_models(exp: Experiment) -> None:
    """Add the models declared in bench.toml as a registered one under another name with other
    options (`[models.bert-mask40]` with `base = "bert"`, `mask_prob = 0.4`), so both can be in one table."""
    where = exp.config_file or "bench.toml"
    for name, table in exp.model_options.items():
        if "base" not in table:
            continue
        base = table["base"]
        here = f"[models.{name}] in {where}"
        if not isinstance(base, str):
            raise ConfigError(f"{here}: base must be the name of a registered model, got {base!r}.")
        if base in exp.model_options and "base" in exp.model_options[base]:
            raise ConfigError(f"{here}: base = {base!r} is itself declared with a base; name a registered model.")
        cls = MODELS.get(base, where=f"{here}: base")
        if name in MODELS and MODELS.source(name) != f"bench.toml {here}":
            raise ConfigError(f"{here}: {name!r} is already a model ({MODELS.source(name)}); give the variant another "
                              f"name, e.g. [models.{base}-variant].")
        options = ", ".join(f"{k} = {v!r}" for k, v in exp.backend_options(name).items())
        MODELS.add(name, cls, description=f"{base} with {options or 'its defaults'}", source=f"bench.toml {here}")
