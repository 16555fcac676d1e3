"""`pretrain.precision = "auto"`: bf16 on a GPU with bf16; on a CPU only with native bf16 (avx512_bf16 /
amx_bf16) and where hardware.CPU_BF16, decided by benchmarks/precision.py, says so. The setting stays
in the run id as before; what ran is recorded with the run (metric `bf16`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.backend import TokenInfo
from bench.train import hardware
from bench.train.hardware import cpu_flags, cpu_native_bf16, resolve_precision

EPYC = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n\n" \
       "processor\t: 1\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
SAPPHIRE = "flags\t\t: fpu avx512f amx_bf16 amx_tile amx_int8\n"
OLD = "flags\t\t: fpu sse2 avx2 fma\n"
ARM = "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics bf16\n"  # aarch64: bf16 is not AVX512-BF16


@pytest.mark.parametrize("text, native", [(EPYC, True), (SAPPHIRE, True), (OLD, False), (ARM, False), ("", False)])
def test_native_bf16_is_read_from_the_cpu_flags(text: str, native: bool) -> None:
    assert cpu_native_bf16(text) is native


def test_cpu_flags_of_the_first_processor_and_none_without_cpuinfo(tmp_path: Path, monkeypatch) -> None:
    assert cpu_flags(EPYC) == {"fpu", "sse2", "avx2", "avx512f", "avx512_bf16", "avx512_vnni"}
    monkeypatch.setattr(hardware, "CPUINFO", tmp_path / "missing")
    assert cpu_flags() == set() and not cpu_native_bf16()


def test_auto_on_a_cpu_needs_native_bf16_and_the_measured_switch() -> None:
    for given in ("fp32", "bf16"):  # explicit settings are taken as given, anywhere
        assert resolve_precision(given, cuda=False, cpu_bf16=False, cpuinfo=OLD) == given
    assert resolve_precision("auto", cuda=False, cpu_bf16=False, cpuinfo=EPYC) == "fp32"  # not measured faster
    assert resolve_precision("auto", cuda=False, cpu_bf16=True, cpuinfo=EPYC) == "bf16"
    assert resolve_precision("auto", cuda=False, cpu_bf16=True, cpuinfo=SAPPHIRE) == "bf16"
    assert resolve_precision("auto", cuda=False, cpu_bf16=True, cpuinfo=OLD) == "fp32"  # emulated bf16: never
    with pytest.raises(ValueError, match="auto, fp32 or bf16"):
        resolve_precision("fp16", cuda=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU rule")
def test_the_loop_resolves_auto_by_the_switch_and_the_flags(tmp_path: Path, monkeypatch) -> None:
    from bench.train.pretrain import mixed_precision

    cpuinfo = tmp_path / "cpuinfo"
    monkeypatch.setattr(hardware, "CPUINFO", cpuinfo)
    cpuinfo.write_text(EPYC, encoding="utf-8")
    monkeypatch.setattr(hardware, "CPU_BF16", False)
    assert mixed_precision("auto") == "no" and mixed_precision("bf16") == "bf16"
    monkeypatch.setattr(hardware, "CPU_BF16", True)
    assert mixed_precision("auto") == "bf16"
    cpuinfo.write_text(OLD, encoding="utf-8")
    assert mixed_precision("auto") == "no"


def test_the_run_id_keeps_the_setting() -> None:
    from bench.config import Experiment, PretrainSettings
    from bench.plan import plan_experiment

    auto = plan_experiment(Experiment(models=("bert",), task="sst2", size="tiny", control=None))
    fp32 = plan_experiment(Experiment(models=("bert",), task="sst2", size="tiny", control=None,
                                      pretrain=PretrainSettings(precision="fp32")))
    assert auto.pretrain_runs[0].spec()["precision"] == "auto"  # as before: existing ids are unchanged
    assert auto.pretrain_runs[0].id != fp32.pretrain_runs[0].id


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU rule")
@pytest.mark.parametrize("setting, switch, ran", [("auto", False, 0.0), ("auto", True, 1.0), ("bf16", False, 1.0),
                                                  ("fp32", True, 0.0)])
def test_what_ran_is_recorded_with_the_run(tmp_path: Path, monkeypatch, setting: str, switch: bool,
                                           ran: float) -> None:
    from bench.train.pretrain import OptimSettings, plan_pretraining, pretrain
    from models.bert import BertBackend
    from models.sizes import SizePreset

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(EPYC, encoding="utf-8")
    monkeypatch.setattr(hardware, "CPUINFO", cpuinfo)
    monkeypatch.setattr(hardware, "CPU_BF16", switch)
    size = SizePreset(name="micro", description="", hidden=32, layers=1, heads=2, ffn=64, embedding=32,
                      gen_hidden=16, gen_heads=1, gen_ffn=32, vocab_size=300, max_position=64, seq_len=16,
                      pretrain_batch=4)
    tokens = TokenInfo(300, pad_id=0, mask_id=4, cls_id=2, sep_id=3, unk_id=1)
    torch.manual_seed(0)
    backend = BertBackend(size, tokens, seq_len=16)
    blocks = torch.randint(5, 300, (8, 16), dtype=torch.int32)
    plan = plan_pretraining(backend, budget_flops=2 * backend.flops_per_step(4, 16).total, convention="paper",
                            batch_size=4, seq_len=16, warmup_fraction=0.1)
    result = pretrain(backend, blocks, plan, OptimSettings(lr=1e-3), pad_id=0, out_dir=tmp_path / "run",
                      save=lambda m, d: None, progress=False, resume=None, precision=setting)
    assert result.precision == ("bf16" if ran else "fp32")
    assert {m.name: m.value for m in result.metrics() if m.step is None}["bf16"] == ran
