"""Size presets: architecture plus the protocol defaults that go with that size.

`small` is ELECTRA-Small and `base` is BERT/ELECTRA-Base as in the ELECTRA paper (Clark et
al. 2020, Table 6 and appendix). `tiny` is sized for a 2-core CPU and for the default job
(`bench run --models electra,bert --task sst2`): its budget (1.5e13 FLOPs) and fine-tuning cap (20,000
examples) are enough for that job's models to learn, in minutes. A suite that must fit a shorter time
sets smaller values for a preset in its own `[size.<preset>]` table (bench.suite), never here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.errors import UnknownNameError
from bench.registry import unknown_name_message


@dataclass(frozen=True)
class SizePreset:
    name: str
    description: str
    # discriminator / encoder
    hidden: int
    layers: int
    heads: int
    ffn: int
    embedding: int
    # generator (ELECTRA): same depth, smaller width; embeddings tied to the discriminator's
    gen_hidden: int
    gen_heads: int
    gen_ffn: int
    # vocabulary size of a tokenizer trained for this preset (ignored when a vocab dir is given)
    vocab_size: int
    max_position: int = 512
    dropout: float = 0.1  # hidden and attention dropout in pretraining (BERT's and ELECTRA's)
    # pretraining defaults
    seq_len: int = 128
    pretrain_batch: int = 128
    pretrain_lr: float = 5e-4
    warmup_fraction: float = 0.01
    budget_flops: float = 1e17
    # fine-tuning defaults
    finetune_lr: float = 3e-4
    finetune_batch: int = 32
    finetune_epochs: float = 3
    finetune_max_length: int = 128
    finetune_max_train: int = 0  # 0 = the whole training split
    seeds: int = 3
    # fine-tuning settings for token (NER) and span (QA) tasks at this size, over the task's own protocol
    # (bench.plan.finetune_settings; bench.toml and flags still win): kind -> {setting: value}
    finetune_kind_caps: dict[str, dict[str, Any]] = field(default_factory=dict, hash=False, compare=False)


SIZES: dict[str, SizePreset] = {
    p.name: p
    for p in (
        SizePreset(
            name="tiny",
            description="CPU-sized smoke test (h128, 4 layers, vocab 8192): checks the pipeline, not the claim",
            hidden=128, layers=4, heads=2, ffn=512, embedding=128,
            gen_hidden=32, gen_heads=1, gen_ffn=128,
            vocab_size=8192,
            pretrain_batch=32, pretrain_lr=5e-4, warmup_fraction=0.1, budget_flops=1.5e13,
            finetune_lr=1e-3, finetune_epochs=1, finetune_max_length=64, finetune_max_train=20000, seeds=3,
            # CPU-sized caps (a few minutes per run on two cores): NER keeps all of WNUT-17 (3,394 train
            # sentences) at 128 sub-tokens; QA trains on 1,200 questions in 256-token windows (ELECTRA: 512)
            # for 1 epoch (ELECTRA: 2) and evaluates 400 of them (the same 400 for every seed and model).
            finetune_kind_caps={"token": {"max_length": 128, "max_eval_examples": 0},
                                "span": {"max_length": 256, "epochs": 1, "max_train_examples": 1200,
                                         "max_eval_examples": 400}},
        ),
        SizePreset(
            name="small",
            description="ELECTRA-Small (h256, 12 layers, 4 heads, emb 128; generator h64): one GPU",
            hidden=256, layers=12, heads=4, ffn=1024, embedding=128,
            gen_hidden=64, gen_heads=1, gen_ffn=256,
            vocab_size=30522,
            pretrain_batch=128, pretrain_lr=5e-4, warmup_fraction=0.01, budget_flops=8.75e16,
            finetune_lr=3e-4, finetune_epochs=3, finetune_max_length=128, seeds=3,
        ),
        SizePreset(
            name="base",
            description="Base (h768, 12 layers, 12 heads, seq 512; generator 1/3 width): several GPUs",
            hidden=768, layers=12, heads=12, ffn=3072, embedding=768,
            gen_hidden=256, gen_heads=4, gen_ffn=1024,
            vocab_size=30522,
            seq_len=512,  # the paper's Base pretrains on 512-token sequences (Small on 128)
            pretrain_batch=256, pretrain_lr=2e-4, warmup_fraction=0.013, budget_flops=6.4e18,
            finetune_lr=1e-4, finetune_epochs=3, finetune_max_length=128, seeds=3,
        ),
    )
}


def get_size(name: str, *, where: str = "") -> SizePreset:
    if name not in SIZES:
        raise UnknownNameError(unknown_name_message("size preset", name, sorted(SIZES), where=where))
    return SIZES[name]
