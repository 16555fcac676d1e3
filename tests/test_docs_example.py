"""The backend that docs/objectives.md walks through is real: its code block runs as written.

The block is written to a module of its own (as a plug-in author would save it), imported, and
held to the contract: a training step, both FLOP conventions, `executed` equal to what
FlopCounterMode counts, and option errors of the kind the harness maps to config errors.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import torch

from bench.backend import CONVENTIONS, AnalyticFlops, Backend
from bench.objectives import RowRandom
from bench.objectives.flops import measure_step_flops
from bench.train.flops import default_token_info
from models.sizes import SizePreset

from conftest import MICRO

DOC = Path(__file__).resolve().parents[1] / "docs" / "objectives.md"


def _example_source() -> str:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## A complete backend"):]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, f"no python block under '## A complete backend' in {DOC}"
    return found.group(1)


@pytest.fixture(scope="module")
def backend_class(tmp_path_factory):
    path = tmp_path_factory.mktemp("mypkg") / "rtd.py"
    path.write_text(_example_source(), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("docs_example_rtd", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.RandomTokenDetection


def test_the_docs_backend_trains_counts_its_flops_and_checks_its_options(backend_class):
    assert issubclass(backend_class, Backend) and backend_class.description
    assert isinstance(backend_class, AnalyticFlops)  # `bench flops` counts it without building it
    size, tokens = SizePreset(**MICRO), default_token_info(120)
    torch.manual_seed(0)
    backend = backend_class(size, tokens, seq_len=32)
    ids = torch.randint(5, 120, (4, 32))
    ids[:, 0], ids[:, -1] = tokens.cls_id, tokens.sep_id
    attention = torch.ones_like(ids)
    attention[1, 20:] = 0
    batch = {"input_ids": ids, "attention_mask": attention,
             "rng": RowRandom(torch.Generator().manual_seed(1), offset=0, rows=4, total=4)}
    out = backend(batch)
    assert torch.isfinite(out.loss) and out.loss.requires_grad
    assert {"loss", "disc_loss", "disc_acc"} <= set(out.metrics)
    for convention in CONVENTIONS:
        assert backend.flops_per_step(4, 32, convention).total > 0
        assert backend.inference_flops(32, convention).total > 0
    measured = measure_step_flops(backend, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    assert measured == pytest.approx(backend.flops_per_step(4, 32, "executed").total, rel=0.01)
    with pytest.raises(TypeError, match="mask_probability"):
        backend_class(size, tokens, mask_probability=0.3)
    with pytest.raises(ValueError, match="mask_prob"):
        backend_class(size, tokens, mask_prob=1.5)
