"""Plug-ins behave like built-ins: their code is part of their runs' identity, and a plug-in that
clashes, fails to import or fails to build is a one-line error naming it, never a silent choice,
a traceback or a bench.toml error.

The first test installs a real outside package (its own pyproject.toml and entry points) with
pip into a folder and runs `bench run` on it in a child process; the others put a hand-written
distribution (a dist-info folder with entry_points.txt) on sys.path, so importlib.metadata finds
it as it finds any installed one, and run the CLI in-process.
"""

from __future__ import annotations

import importlib
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import main
from bench.registry import MODELS, TASKS, PluginError, Registry
from conftest import CLI_BOOTSTRAP, write_corpus

# --- a real outside package, installed with pip ----------------------------------------------------

BACKEND = '''
"""A plug-in backend written against the public toolkit only (bench.backend, bench.objectives)."""

from bench.backend import Backend, BackendOutput
from bench.objectives import (TiedMLMHead, build_encoder, check_options, corrupt, encoder_config, encoder_mask,
                              flops, gather_positions, mlm_loss, n_predictions, sample_mask_positions)

MASK_PROB = 0.15


class TinyMLM(Backend):
    """Masked LM whose chosen tokens all become [MASK]."""

    name = "tinymlm"
    description = "demo plug-in: masked LM, every chosen token masked"

    def __init__(self, size, tokens, *, seq_len=128, **options):
        super().__init__()
        check_options(self.name, options, ())
        self.size, self.tokens, self.seq_len = size, tokens, seq_len
        self.encoder_model = build_encoder(encoder_config(size, tokens))
        self.head = TiedMLMHead(self.encoder_model.config, self.encoder_model.embeddings.word_embeddings)

    def loss(self, batch):
        ids, attention, rng = batch["input_ids"], batch["attention_mask"], batch.get("rng")
        n_pred = n_predictions(ids.size(1), MASK_PROB)
        positions, weights = sample_mask_positions(ids, attention, self.tokens.special_ids, n_pred,
                                                   mask_prob=MASK_PROB, rng=rng)
        masked = corrupt(ids, positions, weights, self.tokens, mask_frac=1.0, random_frac=0.0, rng=rng)
        hidden = self.encoder_model(input_ids=masked,
                                    attention_mask=encoder_mask(self.encoder_model.config, attention)).last_hidden_state
        loss, acc = mlm_loss(self.head(gather_positions(hidden, positions)), ids.gather(1, positions), weights)
        return BackendOutput(loss, {"loss": loss.detach(), "mlm_acc": acc})

    def flops_per_step(self, batch_size, seq_len, convention="paper"):
        enc = flops.encoder_shape(self.size, self.tokens.vocab_size)
        n_pred = n_predictions(seq_len, MASK_PROB)
        return flops.training_step(convention, {
            "encoder.embeddings": flops.embeddings_forward(enc, batch_size, seq_len, convention),
            "encoder.blocks": flops.blocks_forward(enc, batch_size, seq_len, convention),
            "mlm_head": flops.mlm_head_forward(enc, batch_size, seq_len, n_pred, convention),
        })

    def inference_flops(self, seq_len, convention="paper"):
        return flops.encoder_inference_flops(flops.encoder_shape(self.size, self.tokens.vocab_size), seq_len,
                                             convention)

    def encoder(self):
        return self.encoder_model
'''

TASK = '''
"""A plug-in task: in-memory rows, label 1 iff the sentence says "sigma" (a corpus word)."""

import random

import datasets

from bench.metrics import compute_metrics
from bench.task import Task, TaskSpec

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
SIZES = {"train": 64, "dev": 16}


class SigmaTask(Task):
    def __init__(self):
        self.spec = TaskSpec(name="sigma", text_fields=("sentence",), num_labels=2, metrics=("accuracy",),
                             description="demo plug-in task: does the sentence say sigma?")

    def load(self, split, data_dir=None):
        rng = random.Random(split)
        rows = {"sentence": [], "label": []}
        for i in range(SIZES[split]):
            words = [rng.choice(WORDS) for _ in range(5)]
            if i % 2:
                words[rng.randrange(5)] = "sigma"
            rows["sentence"].append(" ".join(words))
            rows["label"].append(i % 2)
        return datasets.Dataset.from_dict(rows)

    def compute_metrics(self, predictions, references):
        return compute_metrics(self.spec.metrics, predictions, references)


SIGMA = SigmaTask()
'''

PYPROJECT = '''
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "bench-plugin-demo"
version = "0.1.0"

[project.entry-points."bench.models"]
tinymlm = "benchplug_demo.backend:TinyMLM"

[project.entry-points."bench.tasks"]
sigma = "benchplug_sigma:SIGMA"

[tool.setuptools]
packages = ["benchplug_demo"]
py-modules = ["benchplug_sigma"]
'''

BENCH_TOML = '''
[run]
models = ["tinymlm"]
task = "sigma"
size = "micro"
results = "results"
data = "."

[data]
corpus = "synthetic"
'''


def _bench(args: list[str], cwd: Path, site: Path) -> subprocess.CompletedProcess:
    """`bench <args>` in a child process that sees the plug-in through PYTHONPATH (no bytecode, so an
    edited source is what runs)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1"}
    return subprocess.run([sys.executable, "-c", CLI_BOOTSTRAP, *args], cwd=cwd, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)


def test_a_plugins_code_is_part_of_its_runs_identity(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "benchplug_demo").mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(PYPROJECT)
    (pkg / "benchplug_demo" / "__init__.py").write_text("")
    (pkg / "benchplug_demo" / "backend.py").write_text(BACKEND)
    (pkg / "benchplug_sigma.py").write_text(TASK)  # a top-level module: hashed apart from the package
    site = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                          "--no-index", "--no-compile", "--target", str(site), str(pkg)],
                         capture_output=True, text=True, timeout=120)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    installed = site / "benchplug_demo"

    project = tmp_path / "project"
    write_corpus(project)
    (project / "bench.toml").write_text(BENCH_TOML)
    args = ["run", "--quiet", "--seeds", "1", "--epochs", "1", "--budget", "2e9", "--control", "none"]

    first = _bench(args, project, site)
    assert first.returncode == 0 and "1 pretrained, 1 fine-tuned, 0 already" in first.stdout, first.stdout
    again = _bench(args, project, site)
    assert again.returncode == 0 and "0 pretrained, 0 fine-tuned, 2 already in the store" in again.stdout, again.stdout

    db = sqlite3.connect(project / "results" / "bench.db")
    env = json.loads(db.execute("SELECT environment FROM runs WHERE kind = 'pretrain'").fetchone()[0])
    assert env["plugins"] == {"model:tinymlm": "bench-plugin-demo 0.1.0", "task:sigma": "bench-plugin-demo 0.1.0"}
    spec = json.loads(db.execute("SELECT spec FROM runs WHERE kind = 'pretrain'").fetchone()[0])
    assert spec["code"].startswith("benchplug_demo.backend:TinyMLM (bench-plugin-demo 0.1.0) sha256:")

    backend = installed / "backend.py"  # the plug-in's own code changes: its runs are new runs
    backend.write_text(backend.read_text().replace("MASK_PROB = 0.15", "MASK_PROB = 0.2"))
    edited = _bench(args, project, site)
    assert edited.returncode == 0 and "1 pretrained, 1 fine-tuned, 0 already" in edited.stdout, edited.stdout

    task = site / "benchplug_sigma.py"  # the task plug-in's code changes, not its rows: fine-tuning again,
    task.write_text(task.read_text() + "\nREVISION = 2\n")  # pretraining kept
    retuned = _bench(args, project, site)
    assert retuned.returncode == 0 and "0 pretrained, 1 fine-tuned, 1 already" in retuned.stdout, retuned.stdout
    done = dict(db.execute("SELECT kind, count(*) FROM runs WHERE status = 'done' GROUP BY kind").fetchall())
    assert done == {"pretrain": 2, "finetune": 3}


# --- a hand-written distribution on sys.path, the CLI in-process ----------------------------------

CLASH = '''
from models.bert import BertBackend


class Clash(BertBackend):
    description = "a plug-in that takes a name already taken"
'''

BROKEN = '''
raise ImportError("fakeplug needs libfoo: pip install libfoo")
'''

GOOD = '''
from bench.backend import Backend
from bench.task import TaskSpec
from tasks.table import TableTask


class Documented(Backend):
    """Demo plug-in told by its docstring.

    More lines that the listing leaves out.
    """


class Failing(Backend):
    description = "a backend whose constructor raises"

    def __init__(self, size, tokens, *, seq_len=128, **options):
        super().__init__()
        raise ValueError(f"hidden = {size.hidden} is not supported by this backend")


WORDS = TableTask(TaskSpec(name="words", text_fields=("text",), num_labels=2, metrics=("accuracy",),
                           description="demo plug-in task told by its spec"), ["a", "b"], {})
'''


def _write_dist(site: Path, name: str, version: str, groups: dict[str, dict[str, str]]) -> None:
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) for group, eps in groups.items()))


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """Installs `fakeplug` 0.1 (and `otherplug` 2.0) by hand: modules and dist-info on sys.path; the
    global registries discover again, and forget these plug-ins afterwards."""
    site = tmp_path / "site"
    (site / "fakeplug").mkdir(parents=True)
    for module, text in {"__init__": "", "clash": CLASH, "broken": BROKEN, "good": GOOD}.items():
        (site / "fakeplug" / f"{module}.py").write_text(textwrap.dedent(text))
    _write_dist(site, "fakeplug", "0.1", {
        "bench.models": {"bert": "fakeplug.clash:Clash", "tinier": "fakeplug.clash:Clash",
                         "broken": "fakeplug.broken:Broken", "documented": "fakeplug.good:Documented",
                         "failing": "fakeplug.good:Failing", "twin": "fakeplug.good:Documented"},
        "bench.tasks": {"words": "fakeplug.good:WORDS"},
    })
    _write_dist(site, "otherplug", "2.0", {"bench.models": {"twin": "fakeplug.good:Documented"}})
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    for registry in (MODELS, TASKS):
        monkeypatch.setattr(registry, "_plugins", {})
        monkeypatch.setattr(registry, "_discovered", False)
    yield site
    for name in [m for m in sys.modules if m == "fakeplug" or m.startswith("fakeplug.")]:
        del sys.modules[name]


def invoke(args, cwd, monkeypatch):
    monkeypatch.chdir(cwd)
    return CliRunner().invoke(main, args, catch_exceptions=False)


def _errors(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(("error:", "problem:"))]


def test_a_name_defined_twice_is_an_error_naming_both_sources(plugins, tmp_path, monkeypatch):
    with pytest.raises(PluginError) as e:
        MODELS.get("bert")
    assert str(e.value) == ("model 'bert' is defined twice: builtin (models.bert:BertBackend) and plug-in entry "
                            "point bench.models 'bert = fakeplug.clash:Clash' from distribution fakeplug 0.1; "
                            "rename one (or uninstall the plug-in).")
    with pytest.raises(PluginError) as e:
        MODELS.get("twin")
    assert ("from distribution fakeplug 0.1 and plug-in entry point bench.models 'twin = fakeplug.good:Documented' "
            "from distribution otherplug 2.0") in str(e.value)
    assert MODELS.get("electra").__name__ == "ElectraBackend" and MODELS.get("tinier").__name__ == "Clash"

    listed = invoke(["list"], tmp_path, monkeypatch)
    assert listed.exit_code == 0 and "electra" in listed.stdout and "tinier" in listed.stdout
    clashes = [line for line in _errors(listed.stderr) if " is defined " in line]
    assert clashes == [f"problem: {MODELS._lookup(n).problem}" for n in ("bert", "twin")]

    run = invoke(["run", "--models", "bert", "--task", "sst2"], tmp_path, monkeypatch)
    assert run.exit_code == 2 and len(_errors(run.output)) == 1
    assert "model 'bert' is defined twice: builtin" in run.output and "Traceback" not in run.output


def test_a_plugin_that_fails_to_import_is_one_line_and_the_rest_still_lists(plugins, tmp_path, monkeypatch):
    with pytest.raises(PluginError) as e:
        MODELS.get("broken")
    message = str(e.value)
    assert message.startswith("model plug-in entry point bench.models 'broken = fakeplug.broken:Broken' from "
                              "distribution fakeplug 0.1 failed to load: ImportError: fakeplug needs libfoo")
    assert "\n" not in message and isinstance(e.value.__cause__, ImportError)

    listed = invoke(["list"], tmp_path, monkeypatch)
    assert listed.exit_code == 0, listed.output
    for name in ("bert", "electra", "scratch", "sst2", "documented", "words", "tiny"):
        assert name in listed.stdout
    assert f"problem: {message}" in _errors(listed.stderr)
    assert "Traceback" not in listed.output
    debug = invoke(["list", "--debug"], tmp_path, monkeypatch)
    assert debug.exit_code == 0 and "Traceback" in debug.stderr and "fakeplug needs libfoo" in debug.stderr

    run = invoke(["run", "--models", "broken", "--task", "sst2"], tmp_path, monkeypatch)
    assert run.exit_code == 2 and _errors(run.output) == [f"error: {message}"] and "Traceback" not in run.output


def test_list_shows_a_plugins_own_description_and_distribution(plugins, tmp_path, monkeypatch):
    listed = invoke(["list"], tmp_path, monkeypatch)
    assert listed.exit_code == 0
    rows = {line.split()[0]: line for line in listed.stdout.splitlines() if line.strip()}
    assert "Demo plug-in told by its docstring." in rows["documented"] and "More lines" not in listed.stdout
    assert rows["documented"].endswith("plug-in fakeplug 0.1")
    assert "demo plug-in task told by its spec" in rows["words"] and rows["words"].endswith("plug-in fakeplug 0.1")
    assert rows["bert"].endswith("builtin + plug-in fakeplug 0.1")  # the clash, on its own row


def test_a_backends_constructor_error_is_the_backends_own(plugins, micro_project, monkeypatch):
    args = ["run", "--quiet", "--models", "failing", "--control", "none"]
    r = invoke(args, micro_project, monkeypatch)
    assert r.exit_code == 2 and _errors(r.output) == [
        "error: backend 'failing' (plug-in fakeplug 0.1) failed to build: ValueError: hidden = 128 is not "
        "supported by this backend; run with --debug for the traceback"], r.output
    assert "Traceback" not in r.output
    debug = invoke([*args, "--debug"], micro_project, monkeypatch)
    assert debug.exit_code == 2 and "Traceback" in debug.output and "raise ValueError" in debug.output

    with open(micro_project / "bench.toml", "a") as f:  # options given: then it is a bad option in that table
        f.write("\n[models.failing]\nwidth = 3\n")
    r = invoke(args, micro_project, monkeypatch)
    assert r.exit_code == 2 and "bad option in [models.failing]: hidden = 128" in r.output, r.output


def test_provenance_hashes_the_plugins_source(plugins, monkeypatch):
    assert MODELS.provenance("electra") is None and MODELS.code("electra") == ""
    prov = MODELS.provenance("documented")
    assert prov["entry_point"] == "bench.models:documented = fakeplug.good:Documented"
    assert (prov["distribution"], prov["version"]) == ("fakeplug", "0.1") and len(prov["source_sha256"]) == 64
    assert MODELS.code("documented") == f"fakeplug.good:Documented (fakeplug 0.1) sha256:{prov['source_sha256'][:16]}"

    # a bench.toml variant of a plug-in ([models.x] with base = "documented") is that plug-in's code
    monkeypatch.setitem(MODELS._entries, "documented-30", None)
    MODELS.add("documented-30", MODELS.get("documented"), source="bench.toml [models.documented-30] in bench.toml")
    assert MODELS.code("documented-30") == MODELS.code("documented")

    (plugins / "fakeplug" / "helpers.py").write_text("X = 1\n")  # another file of the package counts too
    fresh = Registry("model", "bench.models", "models")
    assert fresh.provenance("documented")["source_sha256"] != prov["source_sha256"]
