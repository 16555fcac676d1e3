"""Fine-tune an encoder checkpoint on a task and evaluate it on dev.

The protocol is the ELECTRA paper's, identical for every backend so that only the
pretraining differs: `AutoModel` encoder (no pooler) -> `[CLS]` hidden state -> dropout ->
linear; AdamW (eps 1e-6, no weight decay on biases and LayerNorm); layer-wise learning-rate
decay as in google-research/electra `model/optimization.py`; linear warm-up then linear
decay to zero at the planned end; gradients clipped to norm 1.0 (also as the ELECTRA code).
Batches are grouped by length and padded to their longest sequence (about 2x faster on CPU).
Two data details also follow the ELECTRA code, per task (TaskSpec): regression labels are divided
by `label_scale` for training (STS-B: 0-5 -> [0, 1]) and predictions multiplied back for metrics;
`symmetric_pairs` tasks (MRPC, STS-B) train on every pair in both orders.

Each task kind (bench.task) brings its head, collator and evaluation, the same for every backend
(`_kind_ops`): sentence tasks the `[CLS]` head above; token tasks (NER) a linear layer on every
token's hidden state, each word labelled on its first sub-token (the rest -100, ignored); span tasks
(SQuAD) start/end logits over the context, windows and answer aggregation as the ELECTRA code's
finetune/qa (bench.train.qa), and for SQuAD 2.0 its answerable classifier. Everything else (optimizer,
layer-wise decay, schedule, batching, the collapse probe) is shared. `max_eval_examples` caps the
questions/sentences evaluated (a fixed subset, the same for every seed and model: the tiny preset's caps
for token and span tasks, models/sizes.py).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from bench.errors import ConfigError, DataError
from bench.train.learning_check import learning_check
from bench.train.schedule import linear_schedule
from bench.task import Task

if TYPE_CHECKING:
    import datasets
    from accelerate import Accelerator
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from bench.tracking import RunTracker

# Collapse = [CLS] outputs nearly identical across inputs (cosine > 0.99) AND varying less than a
# quarter as much (in 1 - cosine) as in a random init of the same shape. The second condition is
# needed because a random init is itself at ~0.9998 (tokens barely mix yet) and fine-tunes well.
# Measured on the tiny preset (BERT MLM, SST-2 dev after 1 epoch): random init 0.99983 -> 0.81;
# lr 5e-4, 600 steps: 0.99473 (31x the init's 1 - cosine) -> 0.80; lr 2e-3, 150 steps: 0.99998
# (0.11x) -> 0.64; lr 2e-3, 600 steps: 0.999994 (0.035x) -> 0.51, the majority class.
COLLAPSE_COSINE = 0.99
COLLAPSE_RATIO = 0.25
COLLAPSE_MARK = "[CLS] vectors are nearly identical across inputs"  # in every wording of the collapse warning
DIVERGED_RISE = 0.1  # diverged: non-finite, or last - min > max(10% of first - min, LOSS_NOISE x first)
LOSS_NOISE = 0.01  # a logged loss moving less than 1% of the first one is noise: neither falling nor rising
CLS_PROBE_EXAMPLES = 64
READ_LOSS_EVERY = 25  # fine-tuning steps between host reads of the loss (each is a device sync)
NO_DECAY = ("LayerNorm", "layer_norm", "bias")  # as ELECTRA's exclude_from_weight_decay


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning hyper-parameters; defaults are the ELECTRA paper's (Small: lr 3e-4)."""

    lr: float = 3e-4
    batch_size: int = 32
    epochs: float = 3  # may be fractional
    max_length: int = 128
    warmup_fraction: float = 0.1
    weight_decay: float = 0.0
    layer_decay: float = 0.8
    dropout: float = 0.1  # head dropout, and the encoder's hidden/attention dropout
    adam_eps: float = 1e-6
    max_train_examples: int = 0  # 0 = all; else a random subset drawn with the run's seed
    eval_batch_size: int = 128
    group_by_length: bool = True
    max_grad_norm: float = 1.0  # 0 = no clipping
    max_eval_examples: int = 0  # 0 = all; else a fixed subset (seed 0) of each evaluation split

    def __post_init__(self) -> None:
        from bench.config import RANGES, check_range

        for section, key in RANGES:  # the same ranges bench.toml's [finetune] is held to
            if section == "finetune":
                check_range(section, key, getattr(self, key), "fine-tuning setting")
        checks = {"adam_eps": self.adam_eps > 0, "eval_batch_size": self.eval_batch_size >= 1,
                  "max_grad_norm": self.max_grad_norm >= 0, "max_eval_examples": self.max_eval_examples >= 0}
        for key, ok in checks.items():
            if not ok:
                raise ConfigError(f"fine-tuning setting {key} = {getattr(self, key)!r} is out of range")

    def for_task(self, task: Task, **explicit: Any) -> FinetuneConfig:
        """This config with the task's protocol overrides (RTE/STS-B: 10 epochs), then `explicit`."""
        return dataclasses.replace(self, **{**task.spec.finetune_overrides, **explicit})


@dataclass
class FinetuneResult:
    metrics: dict[str, float]  # spec.reported_metrics: every eval split, suffixed (MNLI: *_mismatched)
    headline: str
    steps: int
    train_examples: int
    train_wall_s: float
    eval_wall_s: float
    cls_cosine: float
    warnings: list[str] = field(default_factory=list)
    data_wall_s: float = 0.0  # loading + tokenizing train and eval splits
    learning: dict[str, float] = field(default_factory=dict)  # bench.train.learning_check: did the run learn?


class ClsClassifier(nn.Module):
    """encoder -> hidden state at position 0 ([CLS]) -> dropout -> linear. No pooler."""

    def __init__(self, encoder: PreTrainedModel, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(encoder.config.hidden_size, num_labels)
        std = getattr(encoder.config, "initializer_range", 0.02)
        nn.init.trunc_normal_(self.classifier.weight, std=std, a=-2 * std, b=2 * std)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: torch.Tensor) -> torch.Tensor:
        hidden = hidden_states(self.encoder, input_ids, attention_mask, **kwargs)
        return self.classifier(self.dropout(hidden[:, 0]))


def encoder_config(source: str | Path, *, dropout: float | None = None) -> tuple[str, Any]:
    """(name to load from, its config) for a save_pretrained folder or a cached hub id; a clear
    DataError if it is neither. Cheap: the harness calls it before any run starts."""
    from transformers import AutoConfig

    path = Path(source).expanduser()
    local = path.is_dir()
    name = str(path) if local else str(source)
    if local and not (path / "config.json").is_file():
        raise DataError(f"encoder folder {path} has no config.json: save the encoder with save_pretrained(folder)")
    try:
        config = AutoConfig.from_pretrained(name, trust_remote_code=False)  # never run a checkpoint's code
    except (OSError, ValueError) as e:
        where = f"the folder {path}" if local else f"{name!r} (not a local folder, and not in the hub cache)"
        raise DataError(
            f"cannot load an encoder from {where}: {str(e).splitlines()[0].rstrip('.')}. Pass a folder written by "
            f"save_pretrained, or a hub id downloaded once on a machine with hub access (it is then read "
            f"offline from the cache, HF_HOME)."
        ) from e
    if dropout is not None:
        for attr in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if hasattr(config, attr):
                setattr(config, attr, dropout)
    return name, config


def hidden_states(encoder: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  **kwargs: torch.Tensor) -> torch.Tensor:
    """The encoder's last hidden states, given the 4-D mask its attention wants: with the 2-D one
    transformers asks every forward whether the mask is all ones, a device sync per step."""
    from bench.objectives.encoders import encoder_mask

    mask = encoder_mask(encoder.config, attention_mask)
    return encoder(input_ids=input_ids, attention_mask=mask, **kwargs).last_hidden_state


def host_values(t: torch.Tensor) -> list[float]:
    """`t`'s values on the host: one device sync (the fine-tuning loop makes one per READ_LOSS_EVERY steps)."""
    return t.float().tolist()


def load_encoder(
    source: str | Path, *, dropout: float | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(encoder without pooler, tokenizer) from a save_pretrained folder or a cached hub id.

    `dropout`, when given, sets the encoder's hidden and attention dropout.
    """
    from transformers import AutoTokenizer

    from bench.objectives.encoders import load_pretrained_encoder

    name, config = encoder_config(source, dropout=dropout)
    try:
        model = load_pretrained_encoder(name, config)  # a crammed (pre-LN) checkpoint keeps its structure
    except (OSError, ValueError) as e:
        raise DataError(f"cannot load the encoder weights from {name}: {str(e).splitlines()[0]}") from e
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise DataError(
            f"encoder {name}: no tokenizer ({str(e).splitlines()[0]}); save it next to the model with "
            f"tokenizer.save_pretrained(folder)"
        ) from e
    # BertModel carries a tanh pooler that ELECTRA lacks; the shared head never uses it.
    if getattr(model, "pooler", None) is not None:
        model.pooler = None
    return model, tokenizer


def layerwise_param_groups(
    model: ClsClassifier, lr: float, layer_decay: float, weight_decay: float
) -> list[dict[str, Any]]:
    """AdamW groups as in ELECTRA's `_get_layer_lrs`, L layers, depth d -> lr * decay^(L + 2 - d).

    Depth 0: embeddings (and embeddings_project); layer i (0-based): i + 1; the head: L + 2,
    so the head gets the full lr, the top layer lr * decay^2 and embeddings lr * decay^(L + 2).
    """
    n_layers = model.encoder.config.num_hidden_layers
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        depth = _depth(name, n_layers)
        decay = not any(key in name for key in NO_DECAY)
        group = groups.setdefault(
            (depth, decay),
            {
                "params": [],
                "param_names": [],
                "lr": lr * layer_decay ** (n_layers + 2 - depth),
                "weight_decay": weight_decay if decay else 0.0,
                "depth": depth,
            },
        )
        group["params"].append(param)
        group["param_names"].append(name)
    return [groups[k] for k in sorted(groups)]


def _depth(name: str, n_layers: int) -> int:
    if not name.startswith("encoder."):
        return n_layers + 2  # the task head
    inner = name[len("encoder.") :]
    if inner.startswith("embeddings"):  # embeddings.* and ELECTRA's embeddings_project.*
        return 0
    match = re.search(r"(?:^|\.)layers?\.(\d+)\.", inner)
    if match:
        return int(match.group(1)) + 1
    return n_layers  # anything else in the encoder (e.g. a final norm) goes with the top layer


class LengthGroupedBatches:
    """A batch sampler yielding `num_batches` batches of indices, over as many epochs as needed.

    shuffle + group_by_length: each epoch, shuffle, cut into chunks of `chunk_batches` batches,
    sort each chunk by length, cut into batches and shuffle the batches (little padding, still
    random). shuffle only: random batches. Neither: batches of sorted lengths (evaluation).
    Each epoch's order depends only on (seed, epoch), so runs are reproducible.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        num_batches: int | None = None,
        seed: int = 0,
        shuffle: bool = True,
        group_by_length: bool = True,
        chunk_batches: int = 50,
    ) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.drop_last = False
        self.per_epoch = math.ceil(len(self.lengths) / batch_size)
        self.num_batches = self.per_epoch if num_batches is None else num_batches
        self.seed = seed
        self.shuffle = shuffle
        self.group_by_length = group_by_length
        self.chunk = chunk_batches * batch_size

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        done, epoch = 0, 0
        while done < self.num_batches:
            for batch in self.epoch_batches(epoch):
                if done == self.num_batches:
                    return
                yield batch
                done += 1
            epoch += 1

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        bs = self.batch_size
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable") if self.group_by_length else np.arange(len(self.lengths))
            return [order[i : i + bs].tolist() for i in range(0, len(order), bs)]
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.lengths))
        if not self.group_by_length:
            return [order[i : i + bs].tolist() for i in range(0, len(order), bs)]
        batches = []
        for start in range(0, len(order), self.chunk):
            chunk = order[start : start + self.chunk]
            chunk = chunk[np.argsort(-self.lengths[chunk], kind="stable")]
            batches += [chunk[i : i + bs].tolist() for i in range(0, len(chunk), bs)]
        return [batches[i] for i in rng.permutation(len(batches))]


@dataclass(frozen=True)
class Collator:
    """Pads a list of encoded examples to the longest in the batch."""

    pad_id: int
    regression: bool
    token_types: bool

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(e["input_ids"]) for e in examples)
        input_ids = torch.full((len(examples), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
        token_type_ids = torch.zeros((len(examples), width), dtype=torch.long)
        for row, e in enumerate(examples):
            n = len(e["input_ids"])
            input_ids[row, :n] = torch.tensor(e["input_ids"])
            attention_mask[row, :n] = 1
            if self.token_types and "token_type_ids" in e:
                token_type_ids[row, :n] = torch.tensor(e["token_type_ids"])
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.token_types:
            batch["token_type_ids"] = token_type_ids
        label_dtype = torch.float32 if self.regression else torch.long
        batch["labels"] = torch.tensor([e["label"] for e in examples], dtype=label_dtype)
        return batch


def encode(
    tokenizer: PreTrainedTokenizerBase, ds: datasets.Dataset, text_fields: Sequence[str], max_length: int
) -> list[dict[str, Any]]:
    """Tokenize (single texts or (a, b) pairs), truncated to max_length, unpadded."""
    # [:] turns datasets' lazy Column into a list in one arrow read (indexing it row by row is slow)
    first = ds[text_fields[0]][:]
    second = ds[text_fields[1]][:] if len(text_fields) > 1 else None
    labels = ds["label"][:]
    out: list[dict[str, Any]] = []
    step = 4096
    for start in range(0, len(first), step):
        enc = tokenizer(
            first[start : start + step],
            second[start : start + step] if second is not None else None,
            truncation=True,
            max_length=max_length,
            return_attention_mask=False,
        )
        types = enc.get("token_type_ids")
        for i, ids in enumerate(enc["input_ids"]):
            example = {"input_ids": ids, "label": labels[start + i]}
            if types is not None:
                example["token_type_ids"] = types[i]
            out.append(example)
    return out


@torch.inference_mode()
def cls_cosine(encoder: PreTrainedModel, batch: dict[str, torch.Tensor]) -> float:
    """Mean pairwise cosine similarity of the encoder's [CLS] outputs over a batch (1.0 = collapsed)."""
    was_training = encoder.training
    encoder.eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    cls = encoder(**inputs).last_hidden_state[:, 0].double()  # 1 - cosine can be ~1e-6
    encoder.train(was_training)
    n = cls.shape[0]
    if n < 2:
        return float("nan")
    if torch.equal(cls, cls[:1].expand_as(cls)):
        return 1.0  # identical, even if all zero (where cosine is undefined)
    unit = F.normalize(cls, dim=-1)
    sim = unit @ unit.T
    return float((sim.sum() - sim.diagonal().sum()) / (n * (n - 1)))


def random_init_cls_cosine(config: Any, batch: dict[str, torch.Tensor], seed: int) -> float:
    """cls_cosine of a freshly initialised encoder of the same config (the untrained reference)."""
    from bench.objectives.encoders import encoder_from_config

    with torch.random.fork_rng(devices=[]):  # leave the run's random stream untouched
        torch.manual_seed(seed)
        reference = encoder_from_config(config)
    return cls_cosine(reference, {k: v.cpu() for k, v in batch.items()})


def is_collapsed(cosine: float, reference: float) -> bool:
    """True when [CLS] barely varies: cosine > 0.99 and 1 - cosine < 0.25 x the random init's."""
    return cosine > COLLAPSE_COSINE and (1 - cosine) < COLLAPSE_RATIO * (1 - reference)


def read_pretraining_record(source: str | Path) -> dict[str, Any] | None:
    """The pretraining record (bench.train.pretrain.PRETRAINING_RECORD) in a checkpoint folder;
    None for a hub id, a folder without one (scratch control, external encoder) or an unreadable one."""
    from bench.train.pretrain import PRETRAINING_RECORD

    path = Path(source).expanduser() / PRETRAINING_RECORD
    try:
        record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return None  # a damaged record only loses the warning's diagnosis, never the run
    return record if isinstance(record, dict) else None


def pretraining_diverged(record: dict[str, Any]) -> bool | None:
    """True: the record's loss diverged (see DIVERGED_RISE); False: it fell by more than noise;
    None: it cannot tell (fewer than two finite logged losses, or a flat loss)."""
    if record.get("nonfinite"):
        return True
    loss = record.get("loss") or {}
    first, low, last = loss.get("first"), loss.get("min"), loss.get("last")
    if record.get("loss_points", 0) < 2 or None in (first, low, last):
        return None
    noise = LOSS_NOISE * abs(first)
    if last - low > max(DIVERGED_RISE * (first - low), noise):
        return True
    return False if first - last > noise else None


def collapse_warning(cosine: float, reference: float, record: dict[str, Any] | None) -> str:
    """The collapse warning's text: "diverged" only when the pretraining record says so, "under-trained"
    when its loss was still falling, else a wording that claims neither. Keeps both cosines."""
    from bench.train.pretrain import PRETRAINING_RECORD

    numbers = f"(mean pairwise [CLS] cosine {cosine:.6f}; a random init of the same shape: {reference:.6f})"
    verdict = None if record is None else pretraining_diverged(record)
    loss = (record or {}).get("loss") or {}
    if record is not None and record.get("nonfinite"):
        return (f"encoder collapsed: {COLLAPSE_MARK}; pretraining diverged: its logged loss became non-finite; "
                f"learning rate too high? {numbers}")
    if verdict:
        path = (f"never fell by more than {LOSS_NOISE:.0%} from its first value {loss['first']:.4g} and ended at "
                f"{loss['last']:.4g}" if loss["first"] - loss["min"] <= LOSS_NOISE * abs(loss["first"]) else
                f"went from {loss['first']:.4g} down to {loss['min']:.4g} (step {loss['min_step']}) and back up "
                f"to {loss['last']:.4g}")
        return (f"encoder collapsed: {COLLAPSE_MARK}; pretraining diverged: its loss {path} (step "
                f"{loss['last_step']}); learning rate too high? {numbers}")
    if verdict is False:
        steps = (record or {}).get("steps", loss["last_step"])
        return (f"encoder under-trained: {COLLAPSE_MARK} while the pretraining loss was still falling "
                f"({loss['first']:.4g} -> {loss['last']:.4g} over {steps} steps); a larger budget trains it further "
                f"{numbers}")
    points = 0 if record is None else record.get("loss_points", 0)
    why = (f"no {PRETRAINING_RECORD} beside the checkpoint tells which" if record is None else
           f"its {PRETRAINING_RECORD} ({points} logged loss value{'s' if points != 1 else ''}, neither falling nor "
           f"rising) cannot tell which")
    return (f"encoder collapsed: {COLLAPSE_MARK}, far more alike than in a random init (an under-trained encoder "
            f"or a diverged pretraining; {why}) {numbers}")


def training_set(task: Task, data_dir: Path | None, cfg: FinetuneConfig, seed: int) -> datasets.Dataset:
    """The rows fine-tuning trains on: the train split, subsampled to cfg.max_train_examples (with
    `seed`), then for spec.symmetric_pairs every kept pair again with its texts swapped, and
    regression labels divided by spec.label_scale."""
    import datasets

    spec = task.spec
    ds = task.load("train", data_dir)
    if cfg.max_train_examples and cfg.max_train_examples < len(ds):
        rng = np.random.default_rng(seed)
        ds = ds.select(np.sort(rng.choice(len(ds), cfg.max_train_examples, replace=False)))
    if spec.symmetric_pairs and len(ds):  # after subsampling, so both orders of each kept pair are trained on
        a, b = spec.text_fields
        swapped = ds.rename_columns({a: b, b: a}).select_columns(ds.column_names)
        ds = datasets.concatenate_datasets([ds, swapped])
    if spec.is_regression and spec.label_scale != 1.0:
        feature = ds.features["label"]
        labels = np.asarray(ds["label"][:], dtype=np.float64) / spec.label_scale
        ds = ds.remove_columns("label").add_column("label", labels.tolist(), feature=feature)
    return ds


def finetune(
    source: str | Path,
    task: Task,
    cfg: FinetuneConfig,
    *,
    seed: int,
    data_dir: Path | None,
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
    accelerator: Accelerator | None = None,
    mixed_precision: str | None = None,
    label: str | None = None,
    tracking: RunTracker | None = None,
) -> FinetuneResult:
    """Fine-tune `source` on `task` with `cfg` and evaluate on every split of spec.eval_splits.

    `accelerator`: reuse one (its object lists then keep this run's model until its owner frees
    them); otherwise one is made for this call, in `mixed_precision` (None or "no" = fp32, "bf16"),
    never in the precision an earlier Accelerator in this process chose.
    `tracking` (bench.tracking): the training loss per step and the final metrics also go to the
    run's experiment trackers (through this call's own Accelerator); they never change what is trained.
    """
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    own_accelerator = accelerator is None
    if accelerator is None:
        from accelerate.utils import DataLoaderConfiguration

        from bench.train.hardware import fresh_accelerator

        # split_batches: each configured batch is the global one, cut into one slice per process, so
        # 1 and N processes take the same steps on the same examples. fresh_accelerator: fp32 unless
        # `mixed_precision` says otherwise, whatever an earlier Accelerator in this process (pretraining) chose
        accelerator = fresh_accelerator(cpu=not torch.cuda.is_available(), mixed_precision=mixed_precision or "no",
                                        dataloader_config=DataLoaderConfiguration(split_batches=True),
                                        **(tracking.accelerator_kwargs() if tracking is not None else {}))
    if tracking is not None:
        tracking.start(accelerator)  # before set_seed: nothing a tracker draws can reach the run's streams
    spec = task.spec
    warnings: list[str] = []
    set_seed(seed)  # python random, numpy, torch (and CUDA)

    # --- data ---
    t0 = time.perf_counter()
    _warm_metric_import()
    encoder, tokenizer = load_encoder(source, dropout=cfg.dropout)
    max_positions = getattr(encoder.config, "max_position_embeddings", None)
    if max_positions is not None and cfg.max_length > max_positions:
        raise ConfigError(
            f"fine-tuning max_length = {cfg.max_length} exceeds the encoder's max_position_embeddings ({max_positions})"
        )
    token_types = getattr(encoder.config, "type_vocab_size", 0) >= 2
    ops = _kind_ops(task, cfg, tokenizer, token_types)
    train_ds = training_set(task, data_dir, cfg, seed)
    if len(train_ds) == 0:
        raise DataError(f"task {spec.name!r}: the train split is empty")
    eval_sets = {split: evaluation_set(task, split, data_dir, cfg) for split in spec.eval_splits}
    train_enc = ops.encode(train_ds, train=True, split="train")
    eval_enc = {split: ops.encode(ds, train=False, split=split) for split, ds in eval_sets.items()}
    if not train_enc:
        raise DataError(f"task {spec.name!r}: no training example could be encoded")
    data_wall_s = time.perf_counter() - t0

    # --- model, optimizer, batches ---
    collate = ops.collate
    model = ops.model(encoder)
    groups = layerwise_param_groups(model, cfg.lr, cfg.layer_decay, cfg.weight_decay)
    # fused: one kernel for the whole update instead of a loop over ~70 tensors (3.5 s -> 0.5 s of a 20 s CPU run)
    fused = accelerator.device.type in ("cuda", "cpu") or None
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), eps=cfg.adam_eps, fused=fused)
    planned = max(1, math.ceil(cfg.epochs * math.ceil(len(train_enc) / cfg.batch_size)))
    train_batches = LengthGroupedBatches(
        [len(e["input_ids"]) for e in train_enc],
        cfg.batch_size,
        num_batches=planned,
        seed=seed,
        group_by_length=cfg.group_by_length,
    )
    train_loader = torch.utils.data.DataLoader(train_enc, batch_sampler=train_batches, collate_fn=collate)
    eval_loaders = [
        torch.utils.data.DataLoader(
            enc,
            batch_sampler=LengthGroupedBatches([len(e["input_ids"]) for e in enc], cfg.eval_batch_size, shuffle=False),
            collate_fn=collate,
        )
        for enc in eval_enc.values()
    ]
    model, optimizer, train_loader, *eval_loaders = accelerator.prepare(model, optimizer, train_loader, *eval_loaders)
    steps = len(train_loader)  # per process, after sharding
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer,
        linear_schedule(cfg.warmup_fraction * steps, steps),
    )

    # --- collapse probe: do [CLS] vectors vary across inputs? ---
    probe_source = next(iter(eval_enc.values()))[:CLS_PROBE_EXAMPLES]
    probe = {k: v.to(accelerator.device) for k, v in collate(probe_source).items() if k in MODEL_INPUTS}
    with accelerator.autocast():
        cosine = cls_cosine(accelerator.unwrap_model(model).encoder, probe)
    if cosine > COLLAPSE_COSINE:
        reference = random_init_cls_cosine(encoder.config, probe, seed)
        if is_collapsed(cosine, reference):
            warnings.append(collapse_warning(cosine, reference, read_pretraining_record(source)))

    # --- train ---
    t0 = time.perf_counter()
    model.train()
    bar = tqdm(
        total=steps,
        desc=label or f"fine-tune {spec.name} seed {seed}",
        unit="step",
        disable=not progress or not accelerator.is_main_process,
        dynamic_ncols=True,
    )
    smoothed = None
    losses: list[torch.Tensor] = []  # this window's losses, still on the device
    for step, batch in enumerate(train_loader, start=1):
        loss = ops.loss(model, batch)
        accelerator.backward(loss)
        if cfg.max_grad_norm > 0:
            accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach())
        bar.update(1)
        if step % READ_LOSS_EVERY and step != steps:
            continue  # the host reads the losses once a window: a read is a device sync
        # every process: the same values, one per step of the window
        values = host_values(accelerator.reduce(torch.stack(losses), reduction="mean"))
        first, losses = step - len(values) + 1, []
        bad = next((i for i, v in enumerate(values) if not math.isfinite(v)), None)
        for i, value in enumerate(values[:bad]):
            smoothed = value if smoothed is None else 0.95 * smoothed + 0.05 * value
            if on_step is not None:
                on_step(first + i, value)
            if tracking is not None:
                tracking.log({"loss": value}, first + i)
        if bad is not None:
            warnings.append(f"fine-tuning loss became {values[bad]} at step {first + bad}; training stopped at step "
                            f"{step}")
            break
        bar.set_postfix(loss=f"{smoothed:.4f}", refresh=False)
    bar.close()
    train_wall_s = time.perf_counter() - t0

    # --- evaluate ---
    t0 = time.perf_counter()
    metrics: dict[str, float] = {}
    learning: dict[str, float] = {}
    for (split, suffix), loader in zip(spec.eval_splits.items(), eval_loaders):
        # the headline's split also answers: did the run learn at all? (a finding, kept beside the score)
        split_metrics, split_learning = ops.evaluate(model, loader, split, eval_sets[split], train_ds, accelerator,
                                                     check=not suffix)
        for name, value in split_metrics.items():
            metrics[name + suffix] = float(value)
        if not suffix:
            learning = split_learning
    eval_wall_s = time.perf_counter() - t0

    if tracking is not None:
        tracking.log({**metrics, "score": metrics[spec.headline], "cls_cosine": cosine}, steps)
    if own_accelerator:
        accelerator.free_memory()  # drop the references prepare() kept, so runs do not pile up
    return FinetuneResult(
        metrics=metrics,
        headline=spec.headline,
        steps=steps,
        train_examples=len(train_enc),
        train_wall_s=train_wall_s,
        eval_wall_s=eval_wall_s,
        cls_cosine=cosine,
        warnings=warnings,
        data_wall_s=data_wall_s,
        learning=learning,
    )


def evaluation_set(task: Task, split: str, data_dir: Path | None, cfg: FinetuneConfig) -> datasets.Dataset:
    """The rows of an evaluation split: all of them, or cfg.max_eval_examples of them drawn with seed 0,
    so every seed and every model of a comparison is evaluated on the same rows."""
    ds = task.load(split, data_dir)
    if cfg.max_eval_examples and cfg.max_eval_examples < len(ds):
        rng = np.random.default_rng(0)
        ds = ds.select(np.sort(rng.choice(len(ds), cfg.max_eval_examples, replace=False)))
    return ds


MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
NEG = -10000.0  # added to the logits of positions a span cannot start or end at (ELECTRA: -1000)


class TokenClassifier(nn.Module):
    """encoder -> every token's hidden state -> dropout -> linear (the ELECTRA code's tagging head)."""

    def __init__(self, encoder: PreTrainedModel, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(encoder.config.hidden_size, num_labels)
        _init_linear(self.classifier, encoder)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: torch.Tensor) -> torch.Tensor:
        hidden = hidden_states(self.encoder, input_ids, attention_mask, **kwargs)
        return self.classifier(self.dropout(hidden))


class SpanHead(nn.Module):
    """encoder -> start and end logits per token, masked to the context and [CLS]: the ELECTRA code's QA head
    (finetune/qa/qa_tasks.py). With `joint` (its default, joint_prediction) the end is predicted given the
    start: [start token's hidden state; each token's] -> dense 512 + GELU -> 1 logit, trained on the gold
    start and decoded by a beam over the `beam_size` most likely starts; without, one linear layer gives
    both. With `no_answer` also its answerable classifier: [CLS] and the start-probability-weighted hidden
    state -> dense 512 + GELU -> 1 logit (high = no answer)."""

    def __init__(self, encoder: PreTrainedModel, no_answer: bool, *, joint: bool = True, beam_size: int = 20) -> None:
        super().__init__()
        self.encoder, self.joint, self.beam_size = encoder, joint, beam_size
        hidden = encoder.config.hidden_size
        self.start = nn.Linear(hidden, 1)
        layers = [self.start]
        if joint:
            # the dense layer on [start; token] as two halves: W [s; t] + b = W_s s + (W_t t + b), so the
            # token half is computed once per window, not once per beam entry
            self.end_from_start = nn.Linear(hidden, 512, bias=False)
            self.end_from_token = nn.Linear(hidden, 512)
            self.end = nn.Linear(512, 1)
            layers += [self.end_from_start, self.end_from_token, self.end]
        else:
            self.end = nn.Linear(hidden, 1)
            layers.append(self.end)
        self.answerable = None
        if no_answer:
            self.answerable = nn.Sequential(nn.Linear(2 * hidden, 512), nn.GELU(), nn.Linear(512, 1))
            layers += [self.answerable[0], self.answerable[2]]
        for layer in layers:
            _init_linear(layer, encoder)

    def _end_logits(self, start_hidden: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Joint end logits (B, L) given one start per row (`start_hidden`, B x H; `tokens` = W_t t + b)."""
        return self.end(F.gelu(tokens + self.end_from_start(start_hidden).unsqueeze(1))).squeeze(-1).float()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, context_mask: torch.Tensor,
                start_positions: torch.Tensor | None = None, **kwargs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training (`start_positions` given, needed by the joint head): start_logits and end_logits.
        Evaluation of the joint head: start_top_log_probs/start_top_index (B, beam) and
        end_top_log_probs/end_top_index (B, beam, beam), the end's top entries given each beam start."""
        hidden = hidden_states(self.encoder, input_ids, attention_mask, **kwargs)
        outside = NEG * (1 - context_mask.float())
        start = self.start(hidden).squeeze(-1).float() + outside
        out = {"start_logits": start}
        if not self.joint:
            out["end_logits"] = self.end(hidden).squeeze(-1).float() + outside
        elif start_positions is not None:
            chosen = hidden[torch.arange(len(hidden), device=hidden.device), start_positions]
            out["end_logits"] = self._end_logits(chosen, self.end_from_token(hidden)) + outside
        else:
            out.update(self._beam(hidden, start, outside))
        if self.answerable is not None:
            weighted = (start.softmax(-1).unsqueeze(-1).to(hidden.dtype) * hidden).sum(1)
            out["answerable_logit"] = self.answerable(torch.cat([hidden[:, 0], weighted], -1)).squeeze(-1).float()
        return out

    def _beam(self, hidden: torch.Tensor, start: torch.Tensor, outside: torch.Tensor) -> dict[str, torch.Tensor]:
        # a fixed width (beam_size) whatever the batch's length, so batches gather across processes unpadded;
        # positions past the length get a logit far below any real one and are never a valid span
        width = max(self.beam_size, hidden.shape[1])
        pad = width - hidden.shape[1]
        start_lp = F.pad(start.log_softmax(-1), (0, pad), value=2 * NEG)
        start_top, start_index = start_lp.topk(self.beam_size, dim=-1)
        tokens = self.end_from_token(hidden)
        rows = torch.arange(len(hidden), device=hidden.device)
        ends = []
        for k in range(self.beam_size):  # one beam entry at a time: B x L x 512 in memory, not B x beam x L x 512
            chosen = hidden[rows, start_index[:, k].clamp(max=hidden.shape[1] - 1)]
            ends.append(F.pad((self._end_logits(chosen, tokens) + outside).log_softmax(-1), (0, pad), value=2 * NEG))
        end_top, end_index = torch.stack(ends, 1).topk(self.beam_size, dim=-1)
        return {"start_top_log_probs": start_top, "start_top_index": start_index,
                "end_top_log_probs": end_top, "end_top_index": end_index}


def _init_linear(layer: nn.Linear, encoder: PreTrainedModel) -> None:
    std = getattr(encoder.config, "initializer_range", 0.02)
    nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


@dataclass(frozen=True)
class PaddedCollator:
    """Pads encoded examples to the longest in the batch: ids with pad_id, `sequences` (name -> pad
    value) alike; `scalars` become one tensor each."""

    pad_id: int
    token_types: bool
    sequences: tuple[tuple[str, int], ...] = ()
    scalars: tuple[str, ...] = ()

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(e["input_ids"]) for e in examples)
        batch = {"input_ids": torch.full((len(examples), width), self.pad_id, dtype=torch.long),
                 "attention_mask": torch.zeros((len(examples), width), dtype=torch.long)}
        if self.token_types:
            batch["token_type_ids"] = torch.zeros((len(examples), width), dtype=torch.long)
        for name, pad in self.sequences:
            batch[name] = torch.full((len(examples), width), pad, dtype=torch.long)
        for row, e in enumerate(examples):
            n = len(e["input_ids"])
            batch["input_ids"][row, :n] = torch.tensor(e["input_ids"])
            batch["attention_mask"][row, :n] = 1
            if self.token_types and "token_type_ids" in e:
                batch["token_type_ids"][row, :n] = torch.tensor(e["token_type_ids"])
            for name, _ in self.sequences:
                batch[name][row, :n] = torch.tensor(e[name])
        for name in self.scalars:
            batch[name] = torch.tensor([e[name] for e in examples], dtype=torch.long)
        return batch


class SentenceOps:
    """Sentence tasks: [CLS] classifier (or regressor), one label per example."""

    def __init__(self, task: Task, cfg: FinetuneConfig, tokenizer: Any, token_types: bool) -> None:
        self.task, self.spec, self.cfg, self.tokenizer = task, task.spec, cfg, tokenizer
        self.collate = Collator(tokenizer.pad_token_id or 0, self.spec.is_regression, token_types)

    def encode(self, ds: Any, *, train: bool, split: str) -> list[dict[str, Any]]:
        return encode(self.tokenizer, ds, self.spec.text_fields, self.cfg.max_length)

    def model(self, encoder: PreTrainedModel) -> nn.Module:
        return ClsClassifier(encoder, self.spec.num_labels, self.cfg.dropout)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        labels = batch.pop("labels")
        logits = model(**batch).float()
        if self.spec.is_regression:
            return F.mse_loss(logits.squeeze(-1), labels)
        return F.cross_entropy(logits, labels)

    def evaluate(self, model: nn.Module, loader: Any, split: str, ds: Any, train_ds: Any, accelerator: Accelerator,
                 *, check: bool) -> tuple[dict[str, float], dict[str, float]]:
        spec = self.spec
        predictions, references = _predict(model, loader, spec.is_regression, accelerator)
        if spec.is_regression:
            predictions = predictions * spec.label_scale  # back to the data's scale: metrics never see the training one
        metrics = self.task.compute_metrics(predictions, references)
        learning = (learning_check(predictions, references, _train_labels(train_ds, spec), _headline_scorer(self.task),
                                   regression=spec.is_regression) if check else {})
        return metrics, learning


class TokenOps:
    """Token tasks: a label per word on its first sub-token; a word cut off by max_length is predicted
    as the training set's most frequent tag ("O")."""

    def __init__(self, task: Task, cfg: FinetuneConfig, tokenizer: Any, token_types: bool) -> None:
        self.task, self.spec, self.cfg, self.tokenizer = task, task.spec, cfg, tokenizer
        if not getattr(tokenizer, "is_fast", False):
            raise ConfigError(f"task {self.spec.name!r}: token tasks need a fast tokenizer (word ids)")
        self.collate = PaddedCollator(tokenizer.pad_token_id or 0, token_types, (("labels", -100),), ("index",))
        self.first: dict[str, list[list[int | None]]] = {}  # split -> per example: each word's first sub-token

    def encode(self, ds: Any, *, train: bool, split: str) -> list[dict[str, Any]]:
        words, tags = ds["tokens"][:], ds["tags"][:]
        enc = self.tokenizer(words, is_split_into_words=True, truncation=True, max_length=self.cfg.max_length,
                             return_attention_mask=False)
        out, firsts = [], []
        for k, ids in enumerate(enc["input_ids"]):
            labels, first = [-100] * len(ids), [None] * len(words[k])
            previous = None
            for position, word in enumerate(enc.word_ids(k)):
                if word is not None and word != previous:
                    labels[position] = tags[k][word]
                    first[word] = position
                previous = word
            example = {"input_ids": ids, "labels": labels, "index": k}
            if "token_type_ids" in enc:
                example["token_type_ids"] = enc["token_type_ids"][k]
            out.append(example)
            firsts.append(first)
        self.first[split] = firsts
        return out

    def model(self, encoder: PreTrainedModel) -> nn.Module:
        return TokenClassifier(encoder, self.spec.num_labels, self.cfg.dropout)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        labels = batch.pop("labels")
        batch.pop("index")
        logits = model(**batch).float()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)

    @torch.inference_mode()
    def evaluate(self, model: nn.Module, loader: Any, split: str, ds: Any, train_ds: Any, accelerator: Accelerator,
                 *, check: bool) -> tuple[dict[str, float], dict[str, float]]:
        names = self.spec.label_names
        train_tags = [t for sentence in train_ds["tags"][:] for t in sentence]
        fallback = int(np.bincount(train_tags, minlength=len(names)).argmax()) if train_tags else 0
        by_index: dict[int, np.ndarray] = {}
        model.eval()
        for batch in loader:
            batch.pop("labels")
            index = batch.pop("index")
            pred = model(**batch).argmax(-1)
            pred = accelerator.pad_across_processes(pred, dim=1, pad_index=-1)
            pred, index = accelerator.gather_for_metrics((pred, index))
            for row, k in zip(pred.cpu().numpy(), index.cpu().numpy()):
                by_index[int(k)] = row
        model.train()
        gold_ids = ds["tags"][:]
        predictions, references = [], []
        for k, first in enumerate(self.first[split]):
            row = by_index[k]
            predictions.append([names[int(row[p])] if p is not None else names[fallback] for p in first])
            references.append([names[t] for t in gold_ids[k]])
        metrics = self.task.compute_metrics(predictions, references)
        if not check or self.spec.headline != "entity_f1":
            return metrics, {}  # a plug-in's own headline: no equivalent check here
        from bench.metrics.entities import entities

        def counts(pred: list[str], gold: list[str]) -> tuple[int, int, int]:
            p, g = set(entities(pred)), set(entities(gold))
            return len(p), len(g), len(p & g)

        run = np.array([counts(p, g) for p, g in zip(predictions, references)], dtype=np.float64)
        trivial = np.array([counts([names[fallback]] * len(g), g) for g in references], dtype=np.float64)
        distinct = len({t for sentence in predictions for t in sentence})
        return metrics, item_learning_check(run, trivial, _entity_f1_of_counts, distinct)


class SpanOps:
    """Span tasks: windows of [CLS] question [SEP] context [SEP] (bench.train.qa), start/end logits."""

    def __init__(self, task: Task, cfg: FinetuneConfig, tokenizer: Any, token_types: bool) -> None:
        self.task, self.spec, self.cfg, self.tokenizer = task, task.spec, cfg, tokenizer
        if not getattr(tokenizer, "is_fast", False):
            raise ConfigError(f"task {self.spec.name!r}: span tasks need a fast tokenizer (offset mapping)")
        self.collate = PaddedCollator(tokenizer.pad_token_id or 0, token_types, (("context_mask", 0),),
                                      ("start_positions", "end_positions", "is_impossible", "index"))
        self.windows: dict[str, list[Any]] = {}
        self.skipped: dict[str, int] = {}

    def encode(self, ds: Any, *, train: bool, split: str) -> list[dict[str, Any]]:
        from bench.train.qa import make_windows

        windows, skipped = make_windows(self.tokenizer, ds["question"][:], ds["context"][:],
                                        ds["answers"][:] if train else None, self.cfg.max_length)
        self.windows[split], self.skipped[split] = windows, skipped
        return [w.as_feature(i) for i, w in enumerate(windows)]

    def model(self, encoder: PreTrainedModel) -> nn.Module:
        from bench.train.qa import BEAM_SIZE, JOINT_PREDICTION

        return SpanHead(encoder, self.spec.no_answer, joint=JOINT_PREDICTION, beam_size=BEAM_SIZE)

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        from bench.train.qa import ANSWERABLE_WEIGHT

        start, end = batch.pop("start_positions"), batch.pop("end_positions")
        impossible = batch.pop("is_impossible")
        batch.pop("index")
        out = model(**batch, start_positions=start)  # the joint head predicts the end given the gold start
        loss = (F.cross_entropy(out["start_logits"], start) + F.cross_entropy(out["end_logits"], end)) / 2
        if "answerable_logit" in out:
            loss = loss + ANSWERABLE_WEIGHT * F.binary_cross_entropy_with_logits(out["answerable_logit"],
                                                                                 impossible.float())
        return loss

    @torch.inference_mode()
    def evaluate(self, model: nn.Module, loader: Any, split: str, ds: Any, train_ds: Any, accelerator: Accelerator,
                 *, check: bool) -> tuple[dict[str, float], dict[str, float]]:
        windows = self.windows[split]
        rows: list[dict[str, np.ndarray]] = [{} for _ in windows]  # per window: the head's outputs
        model.eval()
        for batch in loader:
            for key in ("start_positions", "end_positions", "is_impossible"):
                batch.pop(key)
            index = batch.pop("index")
            out = model(**batch)
            out.setdefault("answerable_logit", torch.zeros_like(index, dtype=torch.float32))
            if "start_top_index" in out:  # a joint prediction is decoded from its beams alone
                out.pop("start_logits")
            for key in ("start_logits", "end_logits"):  # per-position logits: pad to the longest batch of all
                if key in out:
                    out[key] = accelerator.pad_across_processes(out[key], dim=1, pad_index=NEG)
            names = sorted(out)
            gathered = accelerator.gather_for_metrics((*(out[n] for n in names), index))
            for row, k in enumerate(gathered[-1].cpu().numpy()):
                rows[k] = {n: t[row].cpu().numpy() for n, t in zip(names, gathered)}
        model.train()
        contexts = ds["context"][:]
        positions: list[int] = []
        answerable = [float(r["answerable_logit"]) for r in rows] if self.spec.no_answer else None
        if "start_top_index" in rows[0]:
            from bench.train.qa import best_joint_answers

            texts, na = best_joint_answers(windows, *([r[n] for r in rows] for n in (
                "start_top_log_probs", "start_top_index", "end_top_log_probs", "end_top_index")), contexts,
                answerable_logits=answerable, positions=positions)
        else:
            from bench.train.qa import best_answers

            texts, na = best_answers(windows, [r["start_logits"] for r in rows], [r["end_logits"] for r in rows],
                                     contexts, answerable_logits=answerable, positions=positions)
        references = [a["text"] for a in ds["answers"][:]]
        metrics = self.task.compute_metrics(texts, references, na) if self.spec.no_answer else \
            self.task.compute_metrics(texts, references)
        if not check or self.spec.headline != "f1":
            return metrics, {}
        from bench.metrics.squad import NO_ANSWER_THRESHOLD, question_scores

        shown = [("" if na is not None and na[k] > NO_ANSWER_THRESHOLD else t) for k, t in enumerate(texts)]
        run = np.array([[question_scores(t, r)[1]] for t, r in zip(shown, references)], dtype=np.float64)
        # the trivial baseline ignores the question: the better of an empty answer and the context's first three
        # words (SQuAD answers are a few words long), so a run near either one has not learned to answer
        trivial = np.array([[question_scores("", r)[1]] for r in references], dtype=np.float64)
        lead = np.array([[question_scores(" ".join(c.split()[:3]), r)[1]] for c, r in zip(contexts, references)],
                        dtype=np.float64)
        if lead[:, 0].mean() > trivial[:, 0].mean():
            trivial = lead
        # "one class" for QA: every answer starts at the same character (or every answer is empty): an output
        # that ignores the context; pred_classes counts the distinct answer positions (-1 for no answer)
        distinct = len({p if t else -1 for t, p in zip(shown, positions)})
        return metrics, item_learning_check(run, trivial, lambda rows: float(rows[:, 0].mean()), distinct)


def _kind_ops(task: Task, cfg: FinetuneConfig, tokenizer: Any, token_types: bool) -> Any:
    kind = getattr(task.spec, "kind", "sentence")
    return {"sentence": SentenceOps, "token": TokenOps, "span": SpanOps}[kind](task, cfg, tokenizer, token_types)


def _entity_f1_of_counts(rows: np.ndarray) -> float:
    n_pred, n_gold, n_correct = rows.sum(0)
    precision = n_correct / n_pred if n_pred else 0.0
    recall = n_correct / n_gold if n_gold else 0.0
    return float(2 * precision * recall / (precision + recall)) if precision + recall else 0.0


def item_learning_check(run: np.ndarray, trivial: np.ndarray, aggregate: Callable[[np.ndarray], float],
                        distinct: int, *, resamples: int | None = None, seed: int | None = None) -> dict[str, float]:
    """bench.train.learning_check for token and span tasks, whose headline is not a function of one label
    per example: `run` and `trivial` hold per-item statistics (a row per sentence or question) of the run's
    and the trivial predictions (every word the training set's majority tag; every answer empty or the context's
    first three words, whichever scores better), and
    `aggregate` turns rows into the headline. Items are resampled (paired bootstrap); `distinct` is the
    number of distinct predicted tags (answers): 1 is ONE_CLASS. Same record and codes as learning_check."""
    from bench.train import learning_check as lc

    resamples = lc.RESAMPLES if resamples is None else resamples
    rng = np.random.default_rng(lc.SEED if seed is None else seed)
    n = len(run)
    margins = []
    for _ in range(resamples if n > 1 else 0):
        i = rng.integers(0, n, n)
        margins.append(aggregate(run[i]) - aggregate(trivial[i]))
    se = float(np.std(margins, ddof=1)) if len(margins) > 1 else 0.0
    base = aggregate(trivial) if n else 0.0
    margin = (aggregate(run) if n else 0.0) - base
    if distinct <= 1:
        code = lc.ONE_CLASS
    elif margin <= lc.NOISE_SE * se:
        code = lc.AT_BASELINE
    else:
        code = lc.LEARNED
    return {"pred_classes": float(distinct), "trivial_score": float(base), "trivial_margin_se": se,
            "did_not_learn": float(code)}


def _train_labels(train_ds: Any, spec: Any) -> np.ndarray:
    """The training labels on the data's scale (regression trains on label / label_scale)."""
    labels = np.asarray(train_ds["label"][:], dtype=np.float64)
    return labels * spec.label_scale if spec.is_regression else labels


def _headline_scorer(task: Task) -> Callable[[np.ndarray, np.ndarray], float]:
    """The headline metric as a plain function: the built-in metric directly (fast enough to resample), else
    through the task's own compute_metrics."""
    from bench.metrics import KNOWN_METRICS

    name = task.spec.headline
    if name in KNOWN_METRICS:
        from bench.metrics.bench_metric import METRICS

        return METRICS[name]
    return lambda p, r: task.compute_metrics(p, r)[name]


@torch.inference_mode()
def _predict(model: nn.Module, loader: Any, regression: bool, accelerator: Accelerator) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    predictions, references = [], []
    for batch in loader:
        labels = batch.pop("labels")
        logits = model(**batch).float()
        pred = logits.squeeze(-1) if regression else logits.argmax(-1)
        pred, labels = accelerator.gather_for_metrics((pred, labels))
        predictions.append(pred.cpu().numpy())
        references.append(labels.cpu().numpy())
    model.train()
    return np.concatenate(predictions), np.concatenate(references)


def _warm_metric_import() -> None:
    # `evaluate` takes seconds to import; do it here so eval_wall_s measures evaluation.
    try:
        importlib.import_module("evaluate")
    except ImportError:
        pass
