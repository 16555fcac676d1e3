"""A model registered twice under two names with different options: `[models.X] base = "bert"`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import main
from bench.config import load_experiment
from bench.errors import ConfigError, UnknownNameError
from bench.plan import plan_experiment
from bench.registry import MODELS
from bench.runner import register_config_entries

BASE = """
[run]
models = ["bert", "bert-mask40"]
task = "sst2"
size = "tiny"
control = ""
"""


@pytest.fixture
def variants():
    yield
    for entry in MODELS.entries():  # only what a test's bench.toml registered, never a built-in
        if entry.source.startswith("bench.toml [models."):
            MODELS.remove(entry.name)


def _experiment(tmp_path: Path, text: str):
    path = tmp_path / "bench.toml"
    path.write_text(text, encoding="utf-8")
    exp = load_experiment(path)
    register_config_entries(exp)
    return exp


def test_a_variant_is_its_base_with_its_own_options_and_its_own_runs(tmp_path, variants):
    exp = _experiment(tmp_path, BASE + '[models.bert-mask40]\nbase = "bert"\nmask_prob = 0.4\n')
    plan = plan_experiment(exp)
    runs = {r.model: r for r in plan.pretrain_runs}
    assert runs["bert"].options == {} and runs["bert-mask40"].options == {"mask_prob": 0.4}
    assert runs["bert"].id != runs["bert-mask40"].id
    entry = next(e for e in MODELS.entries() if e.name == "bert-mask40")
    assert MODELS.get("bert-mask40") is MODELS.get("bert")
    assert "bert with mask_prob = 0.4" in entry.description and "bench.toml" in entry.source


def test_an_unknown_base_is_a_config_error_with_a_suggestion(tmp_path, variants):
    with pytest.raises(UnknownNameError, match=r"unknown model 'bret'.*\[models.bert-mask40\].*Did you mean 'bert'"):
        _experiment(tmp_path, BASE + '[models.bert-mask40]\nbase = "bret"\n')


def test_a_variant_may_not_take_a_registered_name(tmp_path, variants):
    with pytest.raises(ConfigError, match=r"'electra' is already a model \(builtin\)"):
        _experiment(tmp_path, BASE + '[models.electra]\nbase = "bert"\n')


def test_bench_flops_counts_a_variant_with_its_options(tmp_path, monkeypatch, variants):
    (tmp_path / "bench.toml").write_text(BASE + '[models.bert-mask40]\nbase = "bert"\nmask_prob = 0.4\n',
                                         encoding="utf-8")
    monkeypatch.chdir(tmp_path)

    def head(model: str) -> float:
        out = CliRunner().invoke(main, ["flops", "--model", model, "--size", "tiny", "--convention", "executed",
                                        "--json"])
        assert out.exit_code == 0, out.output
        return json.loads(out.output)["components"]["mlm_head"]

    assert head("bert-mask40") > 2.5 * head("bert")  # 51 of 128 positions predicted, not 19
