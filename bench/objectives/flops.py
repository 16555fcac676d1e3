"""FLOPs of a backend's networks, by component, in the harness's two conventions.

A backend answers `flops_per_step(batch, seq, convention)` for both conventions in
`bench.backend.CONVENTIONS`: add up the forward FLOPs of its components with the functions
below and hand them to `training_step`, which applies the convention's backward multiplier.

`paper`     the ELECTRA authors' `flops_computation.py` (dense one-hot embedding lookups,
            element-wise costs, backward = forward). Budgets are matched in this convention
            by default, so it must follow the script for the paper's FLOP column to hold.
`executed`  every matmul the code runs (2mnk), attention included, heads only at the rows
            they are computed on, backward = 2 x forward. `measure_step_flops` counts a real
            step with `FlopCounterMode`; `bench flops --model NAME --measure` prints the ratio,
            which must be 1.00.
"""

from __future__ import annotations

from bench.backend import CONVENTIONS
from bench.train.flops import (
    TRAIN_MULTIPLIER,
    EncoderShape,
    blocks_forward,
    check_convention,
    detection_head_forward,
    embeddings_forward,
    encoder_inference_flops,
    measure_step_flops,
    mlm_head_forward,
    training_step,
)
from models.sizes import SizePreset

__all__ = ["CONVENTIONS", "TRAIN_MULTIPLIER", "EncoderShape", "blocks_forward", "check_convention",
           "detection_head_forward", "embeddings_forward", "encoder_inference_flops", "encoder_shape",
           "generator_shape", "measure_step_flops", "mlm_head_forward", "training_step"]


def encoder_shape(size: SizePreset, vocab_size: int) -> EncoderShape:
    """The shape of the encoder `bench.objectives.encoders.encoder_config(size, ...)` builds."""
    return EncoderShape(vocab_size, size.hidden, size.layers, size.heads, size.ffn, size.embedding)


def generator_shape(size: SizePreset, vocab_size: int, dims: tuple[int, int, int]) -> EncoderShape:
    """A generator of (hidden, heads, ffn) = `dims` (`generator_dims`), embeddings tied to the discriminator's."""
    hidden, heads, ffn = dims
    return EncoderShape(vocab_size, hidden, size.layers, heads, ffn, size.embedding)
