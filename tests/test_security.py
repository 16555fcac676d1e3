"""What the harness loads is data, never code: safetensors and JSON, no pickle, no remote code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted(p for pkg in ("bench", "models", "tasks", "benchmarks") for p in (ROOT / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=[p.relative_to(ROOT).as_posix() for p in SOURCES])
def test_no_code_is_loaded_from_data(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for call in re.findall(r"torch\.load\([^)]*\)", text):
        assert "weights_only=True" in call, f"{path}: {call} may unpickle code"
    for call in re.findall(r"np\.load\([^)]*\)", text):
        assert "allow_pickle=False" in call, f"{path}: {call} should refuse pickles"
    assert not re.search(r"trust_remote_code\s*=\s*True", text), f"{path}: runs a checkpoint's own code"
    assert not re.search(r"^\s*(import pickle|from pickle|import dill|import joblib)", text, re.M), path
    assert "torch.save(" not in text, f"{path}: writes a pickle; use safetensors"


def test_the_scan_sees_the_code() -> None:
    assert len(SOURCES) > 30 and any(p.name == "resume.py" for p in SOURCES)
