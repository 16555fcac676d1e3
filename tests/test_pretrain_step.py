"""The pretraining step: no host-device sync between logging steps, and torch.compile changes
nothing but speed."""

from __future__ import annotations

import contextlib
import shutil
import sys
from pathlib import Path
from typing import Iterator

import pytest
import torch

from bench.backend import TokenInfo
from bench.train.pretrain import OptimSettings, PretrainResult, plan_pretraining, pretrain
from models.bert import BertBackend
from models.electra import ElectraBackend
from models.sizes import SizePreset

SIZE = SizePreset(name="step-test", description="test-only", hidden=32, layers=2, heads=2, ffn=64, embedding=32,
                  gen_hidden=16, gen_heads=1, gen_ffn=32, vocab_size=64, dropout=0.0)
TOK = TokenInfo(vocab_size=64, pad_id=0, unk_id=1, cls_id=2, sep_id=3, mask_id=4)
SEQ, BATCH = 16, 4


def blocks(n: int = 128) -> torch.Tensor:
    ids = torch.randint(5, TOK.vocab_size, (n, SEQ), generator=torch.Generator().manual_seed(0))
    ids[:, 0], ids[:, -1] = TOK.cls_id, TOK.sep_id
    ids[::3, -4:] = TOK.pad_id  # some padded rows: the token count is data-dependent
    return ids


def run(cls: type, steps: int, tmp: Path, **kw: object) -> PretrainResult:
    torch.manual_seed(0)
    backend = cls(SIZE, TOK, seq_len=SEQ)
    per_step = backend.flops_per_step(BATCH, SEQ, "paper").total
    plan = plan_pretraining(backend, budget_flops=steps * per_step, convention="paper", batch_size=BATCH,
                            seq_len=SEQ, warmup_fraction=0.1)
    shutil.rmtree(tmp, ignore_errors=True)
    return pretrain(backend, blocks(), plan, OptimSettings(lr=1e-3), pad_id=TOK.pad_id, out_dir=tmp,
                    save=lambda m, d: None, progress=False, resume=None, log_every=10, **kw)


@contextlib.contextmanager
def count_reads() -> Iterator[list[str]]:
    """Every way a tensor's value reaches Python (each one waits for the device), recorded with
    its caller. Not counted: torch.optim reading its step counters, which live on the host by
    design (AdamW's fused CUDA kernel, which the loop uses on a GPU, keeps them on the device)."""
    calls: list[str] = []
    names = ("item", "tolist", "__float__", "__int__", "__bool__", "__index__")
    saved = {n: getattr(torch.Tensor, n) for n in names}
    optim = str(Path(torch.optim.__file__).parent)

    def spy(name: str):
        def read(self, *a, **k):
            caller = sys._getframe(1).f_code.co_filename
            if not caller.startswith(optim):
                calls.append(f"{name} in {caller}:{sys._getframe(1).f_lineno}")
            return saved[name](self, *a, **k)
        return read

    for n in names:
        setattr(torch.Tensor, n, spy(n))
    try:
        yield calls
    finally:
        for n, f in saved.items():
            setattr(torch.Tensor, n, f)


@pytest.mark.parametrize("cls", [ElectraBackend, BertBackend])
def test_no_device_read_between_logging_steps(cls, tmp_path):
    # 11 and 19 steps with log_every 10 have the same boundaries' count (steps 1, 10 and the last):
    # any read inside a step would make the longer run read more
    run(cls, 2, tmp_path / "warm")  # first-call work (lazy imports, caches) out of the count
    with count_reads() as short:
        a = run(cls, 11, tmp_path / "a")
    with count_reads() as long:
        b = run(cls, 19, tmp_path / "b")
    assert (a.steps, b.steps) == (11, 19)
    assert len(long) == len(short), (sorted(short), sorted(long))


def test_tokens_are_counted_on_the_device_exactly(tmp_path):
    r = run(BertBackend, 19, tmp_path)
    data = blocks()
    from bench.train.pretrain import BlockOrder

    order = BlockOrder(len(data), BATCH, seed=0)
    expected = sum(int((data[order.indices(s)] != TOK.pad_id).sum()) for s in range(19))
    assert r.tokens == expected
    assert [m.step for m in r.series if m.name == "loss"] == [1, 10, 19]


@pytest.mark.gpu  # also in the GPU checks: there the step is compiled in bf16
@pytest.mark.parametrize("cls", [ElectraBackend])  # the harder graph: two encoders, sampling between them
def test_compiled_step_agrees_with_eager(cls, tmp_path):
    # torch.compile reorders and fuses the same computation. Tolerance, relative: on the CPU (fp32,
    # inductor's C++ backend) 1e-4 on the first-step loss and 1e-3 on the loss logged after 12 steps;
    # on a GPU (bf16 autocast, 8 mantissa bits) 1e-2 and 3e-2
    if not torch.cuda.is_available() and shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("no C++ compiler: torch.compile's CPU backend needs one (apt-get install g++)")
    first, last = (1e-2, 3e-2) if torch.cuda.is_available() else (1e-4, 1e-3)
    eager = run(cls, 12, tmp_path / "eager", compile=False)
    comp = run(cls, 12, tmp_path / "comp", compile=True)
    assert comp.compiled and not eager.compiled

    def loss_at(r: PretrainResult, step: int) -> float:
        return next(m.value for m in r.series if m.name == "loss" and m.step == step)

    assert loss_at(comp, 1) == pytest.approx(loss_at(eager, 1), rel=first)
    assert loss_at(comp, 12) == pytest.approx(loss_at(eager, 12), rel=last)
    assert comp.tokens == eager.tokens and comp.steps == eager.steps


def test_compile_auto_stays_eager_without_a_gpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: auto compiles there")
    assert not run(BertBackend, 2, tmp_path, compile="auto").compiled


def test_a_failing_compile_falls_back_under_auto_and_is_an_error_under_true(tmp_path, monkeypatch):
    import bench.train.pretrain as P
    from bench.errors import ConfigError

    def broken(model, *a, **k):
        def call(*args, **kwargs):  # fails late, as a backward-graph failure would: after drawing masks
            model(*args, **kwargs).loss.backward()
            raise RuntimeError("inductor: no working C++ compiler found")
        return call

    plain = run(BertBackend, 3, tmp_path / "plain", compile=False)
    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr(P, "_compile_wanted", lambda setting, device: setting != False)  # auto as on a GPU
    with pytest.warns(UserWarning, match=r"torch.compile failed \(RuntimeError: inductor: no working C\+\+ compiler "
                                         r"found\); pretraining runs uncompiled"):
        fell_back = run(BertBackend, 3, tmp_path / "auto", compile="auto")
    assert not fell_back.compiled
    assert fell_back.final["loss"] == plain.final["loss"]  # the failed trial left no trace: same draws, same grads
    with pytest.raises(ConfigError, match="pretrain.compile = true, but torch.compile failed: RuntimeError"):
        run(BertBackend, 3, tmp_path / "true", compile=True)


@pytest.mark.gpu
@pytest.mark.parametrize("cls", [ElectraBackend, BertBackend])
def test_no_cuda_sync_between_logging_steps(cls, tmp_path, monkeypatch):
    # on a GPU, torch raises on any synchronising call made while the debug mode is "error": it is
    # switched on after each boundary's first step is queued and off for the boundary read (the one
    # sync per logging window), so steps 2-10 and 11-19 run whole under it (19 steps < one epoch)
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU: torch.cuda.set_sync_debug_mode checks the step there")
    import bench.train.pretrain as P

    run(cls, 2, tmp_path / "warm", compile=False)
    add, read = P._Window.add, P._Window.read
    reads = []

    def checked_add(self, *a, **k):
        add(self, *a, **k)
        torch.cuda.set_sync_debug_mode("error")

    def unchecked_read(self, *a, **k):
        torch.cuda.set_sync_debug_mode("default")
        reads.append(1)
        return read(self, *a, **k)

    monkeypatch.setattr(P._Window, "add", checked_add)
    monkeypatch.setattr(P._Window, "read", unchecked_read)
    try:
        r = run(cls, 19, tmp_path / "run", compile=False)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert r.steps == 19 and len(reads) == 3
