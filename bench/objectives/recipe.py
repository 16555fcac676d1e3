"""Pretraining recipes: one set of architecture and optimisation choices, applied to every objective alike.

`[pretrain] recipe` picks one; it is part of each pretraining run's id (it changes the numbers),
and it reaches every backend the same way: through the size preset the backend is built from
(`apply_recipe`), which `bench.objectives.encoders.encoder_config` reads for the encoder (dropout,
pre-LayerNorm) and `bench.train.pretrain.plan_pretraining` for the schedule. A backend that builds
its networks with `encoder_config`/`build_encoder` (every built-in: ELECTRA's generator and
discriminator, BERT's encoder, the ablations) therefore gets the same recipe with no code of its own.

- `paper` (the default): the ELECTRA/BERT papers' recipe. Post-LayerNorm blocks, dropout 0.1, the
  preset's peak learning rate (tiny/small 5e-4), linear warm-up over the preset's share then linear
  decay to 0 (ELECTRA's `optimization.py`).
- `crammed`: Geiping & Goldstein 2023, "Cramming: Training a Language Model on a Single GPU in One
  Day" (their `arch/crammed-bert.yaml` and `train/bert-o4.yaml`), the changes that matter most for a
  small budget, and that MosaicBERT also uses:
    * pre-LayerNorm blocks (`norm_scheme: pre`) with a final LayerNorm after the last block
      (`final_norm: True`): x + Attn(LN(x)), then x + FFN(LN(x)), then LN. Stable at a high peak rate.
    * no dropout in pretraining (`pretrain_in_train_mode: False`; hidden and attention dropout 0):
      with one pass over little data, dropout only slows learning.
    * peak learning rate 1e-3 (`optim.lr: 1e-3`), twice the paper's 5e-4.
    * their one-cycle triangle (`scheduler: budget-triangle2`: base_percentage 0.25, falloff 0.25):
      the rate starts at 25% of the peak, rises linearly to the peak at 75% of the budget, then
      falls linearly to 0 at the end. `pretrain.warmup_fraction` (default 0.75 under this recipe)
      is where the peak sits. The budget-to-steps rule is unchanged.
    * sparse prediction (`sparse_prediction`): the MLM head runs only at the masked positions. The
      harness already does this for every objective (`gather_positions` before the tied head); the
      discriminator scores every position because that is its objective.
  Not taken over (they are not recipe choices of this comparison, or need other code): their
  gated-GELU FFN, no biases, scaled sinusoidal positions, 25% masking, AdamW betas (0.9, 0.98) with
  eps 1e-12, clipping at 0.5, and the batch-size ramp. Every objective keeps its own masking rate.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from bench.errors import ConfigError
from models.sizes import SizePreset

SCHEDULES = ("linear", "triangle")
TRIANGLE_START = 0.25  # the cramming triangle starts at this share of the peak (their base_percentage)


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    pre_ln: bool = False
    dropout: float | None = None  # None: the preset's
    lr: float | None = None  # peak pretraining learning rate; None: the preset's
    warmup_fraction: float | None = None  # share of the budget before the peak; None: the preset's
    schedule: str = "linear"  # SCHEDULES


RECIPES: dict[str, Recipe] = {
    r.name: r for r in (
        Recipe("paper", "the ELECTRA/BERT papers': post-LN, dropout 0.1, the preset's lr, linear warm-up and decay"),
        Recipe("crammed", "Geiping & Goldstein 2023 (Cramming): pre-LN with a final LayerNorm, no dropout, peak lr "
                          "1e-3, one-cycle triangle (25% of peak -> peak at 75% of the budget -> 0)",
               pre_ln=True, dropout=0.0, lr=1e-3, warmup_fraction=0.75, schedule="triangle"),
    )
}
DEFAULT_RECIPE = "paper"


@dataclass(frozen=True)
class RecipePreset(SizePreset):
    """A size preset with a recipe applied: what a backend is built from. The preset's own fields
    carry the recipe's dropout and learning rate; these three say the rest."""

    recipe: str = DEFAULT_RECIPE
    pre_ln: bool = False
    schedule: str = "linear"


def get_recipe(name: str, *, where: str = "") -> Recipe:
    if name not in RECIPES:
        import difflib

        close = difflib.get_close_matches(name, list(RECIPES), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{where + ': ' if where else ''}pretrain.recipe = {name!r}: unknown recipe.{hint} "
                          f"Choose one of {', '.join(RECIPES)}.")
    return RECIPES[name]


def apply_recipe(size: SizePreset, recipe: str | Recipe) -> RecipePreset:
    """`size` with `recipe`'s dropout, learning rate and warm-up share, and its pre-LN and schedule flags.
    The preset's name stays: the recipe is recorded in the run spec, beside the size."""
    r = get_recipe(recipe) if isinstance(recipe, str) else recipe
    base = {f.name: getattr(size, f.name) for f in dataclasses.fields(SizePreset)}
    if r.dropout is not None:
        base["dropout"] = r.dropout
    if r.lr is not None:
        base["pretrain_lr"] = r.lr
    if r.warmup_fraction is not None:
        base["warmup_fraction"] = r.warmup_fraction
    return RecipePreset(**base, recipe=r.name, pre_ln=r.pre_ln, schedule=r.schedule)


def recipe_of(size: SizePreset) -> Recipe:
    """The recipe a preset was made with (`paper` for a plain preset)."""
    return RECIPES[getattr(size, "recipe", DEFAULT_RECIPE)]
