"""The contract every pretraining backend fulfils: built-ins in `models/`, plug-ins alike.

A backend is an `nn.Module` built from a size preset and the tokenizer's special ids. The
harness only ever calls what is declared on `Backend` below, and never knows which objective
it trains. `docs/objectives.md` walks through a complete backend; the parts to build one
with are in `bench.objectives`.

What the harness calls, in order:

1. `cls(size, tokens, *, seq_len=..., **options)` - the constructor, which keeps `tokens` as
   `self.tokens` (the loop reads its `sep_id` to derive the batch's token types). `options` are
   the keys of the `[models.NAME]` table in bench.toml; an unknown one must raise `TypeError` (use
   `bench.objectives.check_options`) and a bad value `ValueError`: with options given, those
   two become a configuration error naming the table; any other exception (or one raised with
   no options given) is reported as the backend's own error.
2. `flops_per_step(batch, seq, convention)` for both `CONVENTIONS` - the budget is matched in
   one and reported in both; `executed` must equal what `FlopCounterMode` counts on a real step
   (`bench flops --model NAME --measure` prints the ratio: 1.00).
3. `forward(batch)` (that is, `loss`; the batch, token types included, is described there) once
   per step, inside autocast; the optimiser (AdamW) takes every parameter that requires a
   gradient, and `state_dict()` is the resume state.
4. `encoder()` at each checkpoint: the `transformers` model `save_pretrained` writes and the
   fine-tuning runs load (an `ElectraModel` for every built-in).
5. `inference_flops(seq, convention)` - the encoder's cost at fine-tuning, for the report.

Optional, and used when present: the static methods of `AnalyticFlops` (the same FLOPs from
the configuration alone, so `bench flops` and the plan never build a `base`-sized module), `option_names` (listed in errors),
`pretrains = False` for a control that is never trained.

Metrics: `loss` must be among a backend's metrics. The report and its plots draw these
names as training curves: `loss`, `mlm_loss`, `gen_loss`, `disc_loss` (and `disc_base_entropy`,
the loss of a detector that learned nothing, beside `disc_loss`). Any other name (`gen_acc`,
`mlm_acc`, `copy_prob`, ...) is stored with its step and FLOPs and shown as it is.

Fine-tuning scores come from the task, not the backend: a task entry point is an *instance*
(`bench.task.Task`) whose `metrics` name what it reports; a model entry point is a *class*.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol, runtime_checkable

import torch
from torch import nn

if TYPE_CHECKING:
    from models.sizes import SizePreset

CONVENTIONS = ("paper", "executed")


@dataclass(frozen=True)
class TokenInfo:
    """What a backend needs to know about the vocabulary."""

    vocab_size: int
    pad_id: int
    mask_id: int
    cls_id: int
    sep_id: int
    unk_id: int

    @property
    def special_ids(self) -> tuple[int, ...]:
        return (self.pad_id, self.mask_id, self.cls_id, self.sep_id, self.unk_id)


class BackendOutput(NamedTuple):
    """`loss` is what the optimiser minimises; `metrics` are for logging: detached 0-dim tensors
    (read by the loop once per logging window, so a step never waits for the device) or floats."""

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor | float]


@dataclass(frozen=True)
class FlopBreakdown:
    """FLOPs of one training step (or one forward, for inference) by named component."""

    convention: str
    components: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return float(sum(self.components.values()))


class Backend(nn.Module):
    """Base class of pretraining backends.

    Subclasses set `name`/`description`, build their `transformers` modules in `__init__`
    (signature: `(size: SizePreset, tokens: TokenInfo, *, seq_len: int = 128, **options)`)
    and implement `loss`, `flops_per_step`, `inference_flops` and `encoder`. `pretrains = False`
    marks a control that is never trained (the `scratch` backend): the harness skips
    pretraining and saves its encoder as is.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""  # one line: what `bench list` shows
    pretrains: ClassVar[bool] = True
    option_names: ClassVar[tuple[str, ...]] = ()  # the keyword options `[models.NAME]` may set
    tokens: TokenInfo  # keep the constructor's: the loop reads `tokens.sep_id` to derive token types

    def loss(self, batch: dict[str, Any]) -> BackendOutput:
        """batch: `input_ids` [B, L] long, `attention_mask` [B, L] (1 = real token) and
        `token_type_ids` [B, L] (0 = `[CLS] A [SEP]`, 1 = `B [SEP]`: most blocks hold two segments;
        pass `token_type_ids=batch.get("token_type_ids")` to every encoder) of this process's rows,
        and `rng`, a `bench.objectives.RowRandom` whose draws do not depend on how the global batch
        is split over processes (use it for masking and sampling, so that 1 and N processes train
        on the same corrupted examples)."""
        raise NotImplementedError

    def forward(self, batch: dict[str, Any]) -> BackendOutput:
        # The loop calls the module, not `loss`, so DistributedDataParallel's hooks run.
        return self.loss(batch)

    def flops_per_step(self, batch_size: int, seq_len: int, convention: str = "paper") -> FlopBreakdown:
        """Analytic FLOPs of one optimiser step (forward + backward) on a full batch."""
        raise NotImplementedError

    def inference_flops(self, seq_len: int, convention: str = "paper") -> FlopBreakdown:
        """Analytic FLOPs of one forward pass of the encoder on one sequence."""
        raise NotImplementedError

    def encoder(self) -> nn.Module:
        """The `transformers` PreTrainedModel to save for fine-tuning (no pretraining head)."""
        raise NotImplementedError



@runtime_checkable
class AnalyticFlops(Protocol):
    """Optional, on a backend *class*: its FLOPs from the configuration alone (no module built).

    A class with both static methods is an `AnalyticFlops` (`isinstance(cls, AnalyticFlops)`),
    and `bench flops` and the budget's step count call these instead of building the backend,
    which for `base` takes seconds and gigabytes. They must agree with `flops_per_step` and
    `inference_flops` of an instance built with the same options.
    """

    @staticmethod
    def analytic_step_flops(size: SizePreset, vocab_size: int, batch_size: int, seq_len: int,
                            convention: str = "paper", **options: Any) -> FlopBreakdown: ...

    @staticmethod
    def analytic_inference_flops(size: SizePreset, vocab_size: int, seq_len: int,
                                 convention: str = "paper") -> FlopBreakdown: ...
