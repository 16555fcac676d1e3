"""The public toolkit for writing a pretraining objective (a backend).

A backend subclasses `bench.backend.Backend` (the contract: what the harness calls) and builds
its objective from these parts. Each name is also importable from the module that says what it
is; `docs/objectives.md` walks through a complete backend.

- `bench.objectives.encoders`  the encoder every backend trains (`encoder_config`, `build_encoder`,
                               `encoder_mask`, `generator_dims`)
- `bench.objectives.draws`     process-independent random draws (`RowRandom`, `uniform`, `integers`)
- `bench.objectives.masking`   which positions to predict and how to corrupt them
- `bench.objectives.sampling`  generator samples and replaced-token labels
- `bench.objectives.heads`     the tied MLM head and the losses
- `bench.objectives.options`   checks of a backend's keyword options
- `bench.objectives.flops`     FLOPs by component in both conventions, and a measured step
"""

from bench.objectives.draws import RowRandom, integers, uniform
from bench.objectives.encoders import SizePreset, build_encoder, encoder_config, encoder_mask, generator_dims
from bench.objectives.heads import TiedMLMHead, binary_entropy, init_like_hf, mlm_loss, weighted_mean
from bench.objectives.masking import (
    candidate_mask,
    corrupt,
    gather_positions,
    n_predictions,
    non_special_ids,
    sample_mask_positions,
)
from bench.objectives.options import check_mask_prob, check_options
from bench.objectives.sampling import gumbel_noise, gumbel_sample, replace_and_label

__all__ = [
    "RowRandom", "SizePreset", "TiedMLMHead", "binary_entropy", "build_encoder", "candidate_mask", "check_mask_prob",
    "check_options", "corrupt", "encoder_config", "encoder_mask", "gather_positions", "generator_dims",
    "gumbel_noise", "gumbel_sample", "init_like_hf", "integers", "mlm_loss", "n_predictions", "non_special_ids",
    "replace_and_label", "sample_mask_positions", "uniform", "weighted_mean",
]
