"""Defects that only a GPU run would show, checked on the CPU (issue 22, "right on the first GPU run").

- the pretraining step of every backend makes no op that waits for the device or copies from the host
  (a TorchDispatchMode counts them over 11 and 19 steps: anything inside a step makes the longer run count more);
- torch.compile traces the step of electra and bert whole (no graph break at a random draw);
- MFU under DDP is per device; the peak-FLOPs table picks the most specific device name;
- fine-tuning runs in its own precision whatever Accelerator came before it in the process;
- the row draws' resume state is an integer, the same on any device;
- a second run of the loop over the same module reuses its compiled graph (benchmarks/pretrain_speed.py's rounds);
- TOML loads on Python 3.10 (tomli) as on 3.11+ (tomllib).
"""

from __future__ import annotations

import collections
import json
import shutil
import sys
import traceback
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bench.backend import TokenInfo
from bench.objectives import RowRandom
from bench.registry import MODELS
from bench.train.pretrain import OptimSettings, PretrainResult, plan_pretraining, pretrain
from models.sizes import SizePreset

SIZE = SizePreset(name="gpu-props", description="test-only", hidden=32, layers=2, heads=2, ffn=64, embedding=16,
                  gen_hidden=16, gen_heads=1, gen_ffn=32, vocab_size=64, dropout=0.0)
TOK = TokenInfo(vocab_size=64, pad_id=0, unk_id=1, cls_id=2, sep_id=3, mask_id=4)
SEQ, BATCH = 16, 4
PRETRAINING = [n for n in MODELS.names() if MODELS.get(n).pretrains]
REPO = str(Path(__file__).resolve().parents[1])


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # shared 2-core machine
    yield
    torch.set_num_threads(n)


def blocks(n: int = 128) -> torch.Tensor:
    ids = torch.randint(5, TOK.vocab_size, (n, SEQ), generator=torch.Generator().manual_seed(0))
    ids[:, 0], ids[:, SEQ // 2], ids[:, -1] = TOK.cls_id, TOK.sep_id, TOK.sep_id  # two segments
    ids[::3, -4:] = TOK.pad_id  # some padded rows
    return ids


def run(name: str, steps: int, tmp: Path, **kw: Any) -> PretrainResult:
    torch.manual_seed(0)
    backend = MODELS.get(name)(SIZE, TOK, seq_len=SEQ)
    per_step = backend.flops_per_step(BATCH, SEQ, "paper").total
    plan = plan_pretraining(backend, budget_flops=steps * per_step, convention="paper", batch_size=BATCH,
                            seq_len=SEQ, warmup_fraction=0.1)
    shutil.rmtree(tmp, ignore_errors=True)
    return pretrain(backend, blocks(), plan, OptimSettings(lr=1e-3), pad_id=TOK.pad_id, out_dir=tmp,
                    save=lambda m, d: None, progress=False, resume=None, log_every=10, **kw)


# --------------------------------------------------------------------------- 1. no sync, no host copy in a step

aten = torch.ops.aten
SYNCING = {aten.nonzero.default, aten.masked_select.default, aten._local_scalar_dense.default,
           aten.lift_fresh.default, aten.lift_fresh_copy.default}  # data-dependent shapes, reads, host -> device
BOOL_INDEXED = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default, aten._index_put_impl_.default}


class SyncOps(TorchDispatchMode):
    """Records each op that would make a GPU wait (or copy from the host), with the repository line
    that called it. Not recorded: torch.optim (its step counters live on the host by design on the
    CPU; the fused CUDA AdamW the loop uses on a GPU keeps them on the device)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in SYNCING or (func in BOOL_INDEXED and _bool_index(args)):
            where = _caller()
            if where is not None:
                self.seen.append(f"{func} at {where}")
        return func(*args, **kwargs)


def _bool_index(args: tuple) -> bool:
    indices = args[1] if len(args) > 1 and isinstance(args[1], (list, tuple)) else ()
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices)


def _caller() -> str | None:
    """The innermost frame in this repository (tests excluded), or None when torch.optim made the op."""
    frames = traceback.extract_stack()
    if any("/torch/optim/" in f.filename for f in frames):
        return None
    mine = [f for f in frames if f.filename.startswith(REPO) and "/tests/" not in f.filename]
    return f"{mine[-1].filename[len(REPO) + 1:]}:{mine[-1].lineno} ({mine[-1].line})" if mine else "torch internals"


@pytest.mark.parametrize("name", PRETRAINING)
def test_no_sync_or_host_copy_inside_a_pretraining_step(name, tmp_path):
    # 11 and 19 steps with log_every 10 have the same boundaries (steps 1, 10 and the last), which may
    # read the device; any such op inside a step makes the longer run record more
    run(name, 2, tmp_path / "warm")  # one-time work (lazy imports, caches) out of the count
    with SyncOps() as short:
        run(name, 11, tmp_path / "a")
    with SyncOps() as long:
        run(name, 19, tmp_path / "b")
    per_step = collections.Counter(long.seen) - collections.Counter(short.seen)
    assert not per_step, f"{name}: ops inside every step that wait for the device:\n" + "\n".join(
        f"{n // 8} per step: {op}" for op, n in per_step.items())


def test_random_replacements_cover_the_non_special_ids_uniformly():
    # the r-th non-special id, computed without a boolean-indexed pool of ids
    from bench.objectives import corrupt

    tok = TokenInfo(vocab_size=20, pad_id=0, unk_id=7, cls_id=3, sep_id=19, mask_id=7)  # [UNK] = [MASK]: once
    ids = torch.full((1000, 10), 5)
    positions, weights = torch.arange(1, 10).expand(1000, 9).contiguous(), torch.ones(1000, 9)
    new = corrupt(ids, positions, weights, tok, mask_frac=0.0, random_frac=1.0, rng=RowRandom(1, 0, 1000, 1000))
    counts = torch.bincount(new[:, 1:].flatten(), minlength=20).float() / 9000
    expected = torch.tensor([0.0 if i in (0, 3, 7, 19) else 1 / 16 for i in range(20)])
    assert torch.allclose(counts, expected, atol=0.01)


# --------------------------------------------------------------------------- 2. compile traces the whole step


@pytest.mark.parametrize("name", ["electra", "bert"])
def test_the_compiled_step_has_no_graph_break(name):
    torch.manual_seed(0)
    backend = MODELS.get(name)(SIZE, TOK, seq_len=SEQ)
    ids = blocks()[:BATCH]
    batch = {"input_ids": ids, "attention_mask": (ids != TOK.pad_id).long(),
             "token_type_ids": torch.zeros_like(ids),
             "rng": RowRandom(torch.Generator().manual_seed(7), offset=0, rows=BATCH, total=BATCH)}
    torch._dynamo.reset()
    explained = torch._dynamo.explain(backend)(batch)
    reasons = [str(b.reason).strip().splitlines()[0] for b in explained.break_reasons]
    assert explained.graph_break_count == 0, reasons
    assert explained.graph_count == 1


def test_row_draws_are_the_same_compiled_and_eager():
    def draws(rng: RowRandom) -> list[torch.Tensor]:
        return [rng.rand((4, 16), "cpu"), rng.randint(60, (4, 3), "cpu"), rng.rand((8, 5), "cpu")]

    eager_rng, compiled_rng = RowRandom(11, 0, 4, 4), RowRandom(11, 0, 4, 4)
    eager = draws(eager_rng)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(draws)(RowRandom(11, 0, 4, 4))
    assert explained.graph_break_count == 0
    compiled = torch.compile(draws, backend="aot_eager")(compiled_rng)  # the counter is mutated inside the graph
    assert all(torch.equal(a, b) for a, b in zip(eager, compiled))
    assert int(compiled_rng.draws) == int(eager_rng.draws) == 3


def test_row_draws_do_not_depend_on_the_split_and_look_uniform():
    whole = RowRandom(5, offset=0, rows=8, total=8)
    halves = [RowRandom(5, offset=o, rows=4, total=8) for o in (0, 4)]
    for shape in ((8, 16), (8 * 3, 2)):  # rows of the batch, and 3 gathered slots per row
        local = (shape[0] // 2, *shape[1:])
        assert torch.equal(torch.cat([h.rand(local, "cpu") for h in halves]), whole.rand(shape, "cpu"))
    u = RowRandom(0, 0, 1, 1).rand((1, 200_000), "cpu")
    assert 0.0 <= float(u.min()) and float(u.max()) < 1.0
    assert float(u.mean()) == pytest.approx(0.5, abs=0.005) and float(u.var()) == pytest.approx(1 / 12, abs=0.002)
    hist = torch.histc(u, bins=10, min=0.0, max=1.0) / u.numel()
    assert torch.allclose(hist, torch.full((10,), 0.1), atol=0.005)
    k = RowRandom(0, 0, 1, 1).randint(7, (1, 70_000), "cpu")
    assert torch.allclose(torch.bincount(k.flatten(), minlength=7).float() / k.numel(), torch.full((7,), 1 / 7),
                          atol=0.006)
    first, second = RowRandom(3, 0, 1, 1), RowRandom(3, 0, 1, 1)
    a, b = first.rand((1, 1000), "cpu"), first.rand((1, 1000), "cpu")
    assert not torch.equal(a, b) and torch.equal(second.rand((1, 1000), "cpu"), a)
    assert abs(float(torch.corrcoef(torch.stack([a, b]).squeeze(1))[0, 1])) < 0.1  # successive draws unrelated


# --------------------------------------------------------------------------- 3. MFU per device, peak table


def test_mfu_is_per_device_under_ddp(monkeypatch):
    import bench.train.pretrain as P

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H100 80GB HBM3")
    one = P._mfu(400e12, "bf16", 1)
    two = P._mfu(400e12, "bf16", 2)  # the same global FLOP/s from two GPUs: each works half as hard
    assert one == pytest.approx(400e12 / 989e12) and two == pytest.approx(one / 2)


def test_a_peak_given_in_the_environment_is_used_and_checked(monkeypatch):
    from bench.errors import ConfigError
    from bench.train.hardware import peak_override

    monkeypatch.delenv("BENCH_PEAK_FLOPS", raising=False)
    assert peak_override() is None
    monkeypatch.setenv("BENCH_PEAK_FLOPS", "2.5e14")
    assert peak_override() == 2.5e14
    for bad in ("fast", "-1", "0", "nan"):
        monkeypatch.setenv("BENCH_PEAK_FLOPS", bad)
        with pytest.raises(ConfigError, match="BENCH_PEAK_FLOPS"):
            peak_override()


def test_peak_flops_takes_the_most_specific_name():
    from bench.train.hardware import peak_flops

    assert peak_flops("NVIDIA H100 80GB HBM3", "bf16") == 989e12
    assert peak_flops("NVIDIA H100 PCIe", "bf16") == 756e12
    assert peak_flops("NVIDIA H100 NVL", "bf16") == 835.5e12
    assert peak_flops("NVIDIA L40", "bf16") == 181e12
    assert peak_flops("NVIDIA L40S", "bf16") == 362e12
    assert peak_flops("NVIDIA L4", "bf16") == 121e12
    assert peak_flops("NVIDIA A100-SXM4-80GB", "tf32") == 156e12
    assert peak_flops("NVIDIA A10", "tf32") == 62.5e12
    assert peak_flops("Some Future GPU", "bf16") is None


# --------------------------------------------------------------------------- 4. fine-tuning precision


@pytest.fixture
def clean_accelerate():
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()


def _finetune_precision(tmp_path: Path, monkeypatch) -> str:
    """Run bench.train.finetune.finetune on a tiny task up to the point its Accelerator exists, and
    return that Accelerator's mixed precision."""
    import bench.train.finetune as F

    seen: dict[str, str] = {}

    class Stop(Exception):
        pass

    def stop_at_seed(*a: Any, **k: Any) -> None:  # called right after the Accelerator is made: no data needed
        from accelerate.state import AcceleratorState

        seen["precision"] = AcceleratorState().mixed_precision
        raise Stop

    import accelerate.utils

    monkeypatch.setattr(accelerate.utils, "set_seed", stop_at_seed)
    with pytest.raises(Stop):
        F.finetune(tmp_path / "none", task=_NoTask(), cfg=None, seed=0, data_dir=None, progress=False)
    monkeypatch.undo()
    return seen["precision"]


class _NoTask:
    spec = None


def test_finetuning_runs_in_fp32_after_a_bf16_pretraining_accelerator(tmp_path, monkeypatch, clean_accelerate):
    from accelerate import Accelerator

    Accelerator(cpu=True, mixed_precision="bf16")  # as pretraining makes it: the process-wide state says bf16
    assert _finetune_precision(tmp_path, monkeypatch) == "no"


def test_pretraining_in_bf16_after_fine_tuning_in_fp32_does_not_raise(tmp_path, monkeypatch, clean_accelerate):
    assert _finetune_precision(tmp_path, monkeypatch) == "no"
    r = run("bert", 2, tmp_path / "pt", precision="bf16")  # raised in accelerate: "already been initialized"
    assert r.steps == 2
    from accelerate.state import AcceleratorState

    assert AcceleratorState().mixed_precision == "bf16"
    assert _finetune_precision(tmp_path, monkeypatch) == "no"


# --------------------------------------------------------------------------- 5. resume on another device


def test_the_row_draws_resume_state_is_an_integer_for_any_device(tmp_path):
    from safetensors.torch import load_file

    from bench.train.pretrain import ResumeSettings, _restore_rng

    torch.manual_seed(0)
    backend = MODELS.get("electra")(SIZE, TOK, seq_len=SEQ)
    per_step = backend.flops_per_step(BATCH, SEQ, "paper").total
    plan = plan_pretraining(backend, budget_flops=3 * per_step, convention="paper", batch_size=BATCH, seq_len=SEQ,
                            warmup_fraction=0.1)
    pretrain(backend, blocks(), plan, OptimSettings(lr=1e-3), pad_id=TOK.pad_id, out_dir=tmp_path,
             save=lambda m, d: None, progress=False, resume=ResumeSettings(every_steps=1, every_minutes=0),
             log_every=1)
    step = json.loads((tmp_path / "resume" / "state.json").read_text())["loop"]["step"]
    saved = load_file(str(next((tmp_path / "resume").glob("state-*.safetensors"))), device="cpu")
    rows = saved["rng.loop.row_draws"]
    # a counter (not a CPU Mersenne-Twister state, which a CUDA generator refuses): it loads anywhere
    assert rows.dtype == torch.int64 and rows.dim() == 0 and int(rows) == 3 * step > 0  # electra: 3 draws a step
    elsewhere = RowRandom(0, offset=0, rows=BATCH, total=BATCH, device="meta")  # another device: a copy, no error
    _restore_rng({"row_draws": rows}, elsewhere, rank=0)
    here = RowRandom(0, offset=0, rows=BATCH, total=BATCH)
    _restore_rng({"row_draws": rows}, here, rank=0)
    fresh = RowRandom(0, offset=0, rows=BATCH, total=BATCH)
    for _ in range(3 * step):
        fresh.rand((BATCH, 2), "cpu")
    assert torch.equal(here.rand((BATCH, 5), "cpu"), fresh.rand((BATCH, 5), "cpu"))  # continues the stream


# --------------------------------------------------------------------------- 5. TOML on Python 3.10


def test_toml_loads_with_tomllib_or_tomli(monkeypatch, tmp_path):
    import importlib

    import bench.toml_compat as T

    assert T.loads('a = 1\n[b]\nc = "x"\n') == {"a": 1, "b": {"c": "x"}}
    (tmp_path / "x.toml").write_bytes(b"k = [1, 2]\n")
    with open(tmp_path / "x.toml", "rb") as f:
        assert T.load(f) == {"k": [1, 2]}
    assert issubclass(T.TOMLDecodeError, ValueError)
    # as on Python 3.10: no tomllib, tomli instead
    fake_tomli = type(sys)("tomli")
    fake_tomli.loads, fake_tomli.load, fake_tomli.TOMLDecodeError = (lambda s: {"from": "tomli"}), None, ValueError
    monkeypatch.setitem(sys.modules, "tomllib", None)  # `import tomllib` raises, as on 3.10
    monkeypatch.setitem(sys.modules, "tomli", fake_tomli)
    try:
        reloaded = importlib.reload(T)
        assert reloaded.tomllib is fake_tomli and reloaded.loads("") == {"from": "tomli"}
    finally:
        monkeypatch.undo()
        importlib.reload(T)


def test_a_second_loop_over_the_same_module_reuses_its_compiled_graph(tmp_path, monkeypatch):
    # benchmarks/pretrain_speed.py times several rounds of the harness's loop on one module: only the first
    # round compiles (dynamo finds the graph in its cache), so no round pays for a recompilation. Dynamo's
    # cache is what is tested; aot_eager stands in for inductor, whose C++ build would take minutes here.
    import functools

    from torch._dynamo.utils import counters

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    torch._dynamo.reset()
    torch.manual_seed(0)
    backend = MODELS.get("bert")(SIZE, TOK, seq_len=SEQ)
    per_step = backend.flops_per_step(BATCH, SEQ, "paper").total
    plan = plan_pretraining(backend, budget_flops=3 * per_step, convention="paper", batch_size=BATCH, seq_len=SEQ,
                            warmup_fraction=0.1)
    graphs = []
    for i in range(2):
        r = pretrain(backend, blocks(), plan, OptimSettings(lr=1e-3), pad_id=TOK.pad_id, out_dir=tmp_path / str(i),
                     save=lambda m, d: None, progress=False, resume=None, log_every=10, compile="true")
        assert r.compiled and r.steps == 3
        graphs.append(counters["stats"]["unique_graphs"])
    assert graphs[1] == graphs[0] > 0, graphs
