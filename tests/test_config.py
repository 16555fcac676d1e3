from pathlib import Path

import pytest

from bench.config import load_experiment
from bench.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "bench.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_defaults_without_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exp = load_experiment()
    assert exp.models == ("electra", "bert") and exp.task == "sst2" and exp.control == "scratch"
    assert exp.config_file is None


def test_file_then_cli_overrides(tmp_path):
    p = write(tmp_path, '[run]\nmodels = ["bert"]\nseeds = 5\n[pretrain]\nlr = 1e-3\n[models.electra]\ndisc_weight = 20\n')
    exp = load_experiment(p, {"models": "electra,bert", "budget": "2e13", "quiet": None})
    assert exp.models == ("electra", "bert")
    assert exp.seeds == 5 and exp.pretrain.lr == 1e-3 and exp.budget == "2e13"
    assert exp.model_options == {"electra": {"disc_weight": 20}}


def test_unknown_key_names_key_file_line_and_suggests(tmp_path):
    p = write(tmp_path, '[run]\ntask = "sst2"\nseedz = 3\n')
    with pytest.raises(ConfigError) as e:
        load_experiment(p)
    msg = str(e.value)
    assert str(p) in msg and "line 3" in msg and "run.seedz" in msg and "Did you mean 'seeds'" in msg
    assert "models" in msg  # lists the valid keys


def test_unknown_table(tmp_path):
    p = write(tmp_path, "[pretrian]\nlr = 1\n")
    with pytest.raises(ConfigError, match=r"unknown key \[pretrian\].*Did you mean 'pretrain'"):
        load_experiment(p)


def test_wrong_type_names_key_and_type(tmp_path):
    p = write(tmp_path, '[pretrain]\nbatch_size = "many"\n')
    with pytest.raises(ConfigError, match=r"line 2.*pretrain.batch_size.*an integer.*'many'"):
        load_experiment(p)


def test_malformed_toml_names_file_and_line(tmp_path):
    p = write(tmp_path, '[run]\nmodels = ["electra"\ntask = "sst2"\n')
    with pytest.raises(ConfigError) as e:
        load_experiment(p)
    assert f"{p}, line 3: malformed TOML" in str(e.value)  # the unclosed array runs to the last line


def test_bad_budget_and_convention(tmp_path):
    with pytest.raises(ConfigError, match="cannot read budget 'lots'"):
        load_experiment(write(tmp_path, '[run]\nbudget = "lots"\n'))
    with pytest.raises(ConfigError, match="budget_convention.*paper, executed"):
        load_experiment(write(tmp_path, '[run]\nbudget_convention = "mine"\n'))


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_experiment(tmp_path / "nope.toml")
