import pytest

from bench.errors import UnknownNameError
from bench.registry import MODELS, TASKS, Registry


def test_builtins_registered():
    assert {"electra", "bert", "scratch"} <= set(MODELS.names())
    assert "sst2" in TASKS.names()


def test_did_you_mean():
    with pytest.raises(UnknownNameError) as e:
        MODELS.get("electar")
    msg = str(e.value)
    assert "'electar'" in msg and "Did you mean 'electra'" in msg and "bert" in msg


def test_throwaway_entry_inline():
    reg = Registry("widget", "bench.widgets.none", "models")

    @reg.register("spin", description="a test widget")
    class Spin:
        pass

    assert reg.get("spin") is Spin
    assert [(e.name, e.description) for e in reg.entries() if e.name == "spin"] == [("spin", "a test widget")]
    reg.remove("spin")
    assert "spin" not in reg


def test_entry_point_plugins_load_lazily(monkeypatch):
    from importlib.metadata import EntryPoint

    import bench.registry as registry

    ep = EntryPoint(name="plugbert", value="models.bert:BertBackend", group="bench.models")
    monkeypatch.setattr(registry, "entry_points", lambda group: [ep] if group == "bench.models" else [])
    reg = Registry("model", "bench.models", "models")  # fresh: discovery runs with the fake group
    entry = next(e for e in reg.entries() if e.name == "plugbert")
    assert entry.obj is None and entry.source == "plug-in (no distribution)"  # not imported yet
    from models.bert import BertBackend

    assert reg.get("plugbert") is BertBackend
    assert "plugbert" not in MODELS._entries  # the fake group never leaked into the global registry
