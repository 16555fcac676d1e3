"""Claims at matched compute: each pair of models, and each model against the no-pretraining control.

Claims compare models on the same task and size at the same FLOP budget: the median-score gap
with a bootstrap interval over fine-tuning seeds, and, where compute curves exist, the compute
each needs to reach the other's best score, with a bootstrap interval over seeds, in FLOPs and in
wall-clock. When two models matched in one convention differ by more than FLOPS_MISMATCH in the
other, their claim sentence says so with the ratio.

A speed-up is printed with its interval and withheld, saying why, when neither model of the
pair beats the no-pretraining control at the full budget (where a control is in the comparison:
the curves then show seed noise), when its interval spans 1x, or when there are no per-seed
scores to resample.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench.results.stats import (MIN_SEEDS_FOR_CLAIM, Curve, GapCI, SpeedupCI, bootstrap_median_gap,
                                 bootstrap_speedups, claim_sentence, claims_made, range_gap, verdict,
                                 withheld_reasons)
from bench.results.tables import (CONVENTIONS, SEED_SCORES, Rows, Table, as_rows, full_budget, is_present,
                                  seed_scores_of)

if TYPE_CHECKING:
    import pandas as pd

FLOPS_MISMATCH = 0.05  # matched in one convention, a pair further apart than this in the other is told so
CLAIM_ORDER = ("electra", "bert")  # the paper's claim: earlier names are claimed to beat later ones
LEVEL = 0.95


@dataclass(frozen=True)
class PairClaim:
    """Model a vs model b on one task and size at one FLOP budget (b may be the no-pretraining control)."""

    task: str
    size: str
    budget_flops: float
    a: str
    b: str
    ci: GapCI
    a_to_b: SpeedupCI | None  # compute a needs to reach b's best score, with its interval
    b_to_a: SpeedupCI | None
    vs_control: bool
    sentence: str
    withheld: str | None = None  # why no speed-up of this pair is claimed at all (neither beats the control)
    flops_ratio: dict[str, float | None] = field(default_factory=dict)  # convention -> a's FLOPs / b's

    @property
    def verdict(self) -> str:
        return verdict(self.ci)

    @property
    def indicative(self) -> bool:
        """A verdict or speed-up claimed from fewer than MIN_SEEDS_FOR_CLAIM seeds on either side."""
        seeds = claims_made(self.ci, self.a_to_b, self.b_to_a, self.withheld)
        return seeds is not None and min(seeds) < MIN_SEEDS_FOR_CLAIM

    def record(self) -> dict[str, Any]:
        """A flat row for tables and JSON. Speed-ups are b's cost / a's cost (0: never reaches it), with the
        bootstrap interval, in FLOPs and wall-clock; speedup_*_withheld says why one is not claimed ('' if it is)."""
        rec: dict[str, Any] = {
            "task": self.task, "size": self.size, "budget_flops": self.budget_flops, "model_a": self.a,
            "model_b": self.b, "gap": self.ci.gap, "ci_low": self.ci.low, "ci_high": self.ci.high,
            "seeds_a": self.ci.n_a, "seeds_b": self.ci.n_b, "p_a_ahead": self.ci.p_greater,
            "verdict": {"better": f"{self.a} better", "worse": f"{self.b} better", "same": "no difference",
                        "unknown": "one seed"}[self.verdict],
            "indicative": self.indicative,
            **{f"flops_ratio_{c}": self.flops_ratio.get(c) for c in CONVENTIONS},
        }
        reasons = withheld_reasons(self.a_to_b, self.b_to_a, self.withheld)
        for side, s, why in (("a", self.a_to_b, reasons[0]), ("b", self.b_to_a, reasons[1])):
            rec.update({f"speedup_{side}": s.ratio if s else None, f"speedup_{side}_low": s.low if s else None,
                        f"speedup_{side}_high": s.high if s else None,
                        f"wall_speedup_{side}": s.wall_ratio if s else None,
                        f"wall_speedup_{side}_low": s.wall_low if s and s.wall else None,
                        f"wall_speedup_{side}_high": s.wall_high if s and s.wall else None,
                        f"speedup_{side}_withheld": why or ""})
        return rec


def _claim_rank(model: str) -> tuple[int, str]:
    return (CLAIM_ORDER.index(model) if model in CLAIM_ORDER else len(CLAIM_ORDER), model)


CurveKey = tuple[str, str, str, float]  # model, size, task, budget_flops


def curve_points(table: Table) -> dict[CurveKey, list[dict[str, Any]]]:
    """Each model's curve points per size, task and budget: the rows with pretraining FLOPs, in table order, the
    last row of a FLOPs value kept. Read once, so a claim looks its curves up instead of filtering the table."""
    groups: dict[CurveKey, list[dict[str, Any]]] = {}
    for r in as_rows(table).records:
        key = (r["model"], r["size"], r["task"], r["budget_flops"])
        if is_present(key) and (r["pretrain_flops"] or 0) > 0:
            groups.setdefault(key, []).append(r)
    out = {}
    for key, rows in groups.items():
        last = {r["pretrain_flops"]: i for i, r in enumerate(rows)}  # drop_duplicates(keep="last")
        out[key] = [r for i, r in enumerate(rows) if last[r["pretrain_flops"]] == i]
    return out


def _curve(df: Rows, row: dict[str, Any],
           points: dict[CurveKey, list[dict[str, Any]]] | None = None) -> Curve | None:
    """A model's compute curve at one budget with each point's per-seed scores and wall-clock, or None with
    fewer than two points. Without per-seed scores (a frame read back from a file) each point has its median.
    `points`: curve_points(df), when the caller looks up many curves."""
    key = (row["model"], row["size"], row["task"], row["budget_flops"])
    recs = (curve_points(df) if points is None else points).get(key, []) if is_present(key) else []
    if len(recs) < 2:
        return None
    seeds = [seed_scores_of(df, r) or [float(r["score_median"])] for r in recs]
    walls = [float(r["pretrain_wall_s"]) if r.get("pretrain_wall_s") is not None else None for r in recs]
    return Curve.of([float(r["pretrain_flops"]) for r in recs], seeds, walls)


def _speedups(df: Rows, ra: dict[str, Any], rb: dict[str, Any], level: float,
              points: dict[CurveKey, list[dict[str, Any]]] | None = None,
              draws: dict[tuple[Any, ...], Any] | None = None) -> tuple[SpeedupCI | None, SpeedupCI | None]:
    """Both directions' speed-ups with their intervals, or (None, None) without two curves."""
    ca, cb = _curve(df, ra, points), _curve(df, rb, points)
    if ca is None or cb is None:
        return None, None
    ab, ba = bootstrap_speedups(ca, cb, level=level, draws=draws)
    if not df.attrs.get(SEED_SCORES):  # medians only: there was nothing to resample
        ab, ba = (dataclasses.replace(x, method="no-seeds", n_resamples=0) for x in (ab, ba))
    return ab, ba


def _gap(df: Rows, ra: dict[str, Any], rb: dict[str, Any], level: float) -> GapCI:
    """Bootstrap over the per-seed scores; a frame without them (built elsewhere) falls back to the seed ranges."""
    sa, sb = seed_scores_of(df, ra), seed_scores_of(df, rb)
    if sa and sb:
        return bootstrap_median_gap(sa, sb, level=level)
    return range_gap(ra["score_median"], ra["score_min"], ra["score_max"], int(ra["seeds"]),
                     rb["score_median"], rb["score_min"], rb["score_max"], int(rb["seeds"]))


def _num(v: Any) -> float | None:
    return None if v is None or isinstance(v, str) or v != v else float(v)


def matched_convention(ra: dict[str, Any], rb: dict[str, Any]) -> str:
    """The convention `pretrain_flops` is counted in: the one whose column repeats it (paper if both do)."""
    for r in (ra, rb):
        for c in CONVENTIONS:
            x, y = _num(r.get("pretrain_flops")), _num(r.get(f"pretrain_flops_{c}"))
            if x and y and math.isclose(x, y, rel_tol=1e-9):
                return c
    return CONVENTIONS[0]


def flops_ratios(ra: dict[str, Any], rb: dict[str, Any]) -> dict[str, float | None]:
    """a's pretraining FLOPs / b's, per convention (None where either is missing or zero)."""
    out: dict[str, float | None] = {}
    for c in CONVENTIONS:
        x, y = _num(ra.get(f"pretrain_flops_{c}")), _num(rb.get(f"pretrain_flops_{c}"))
        out[c] = x / y if x and y else None
    return out


def mismatch_note(a: str, b: str, ra: dict[str, Any], rb: dict[str, Any]) -> str:
    """' (matched in the paper convention, electra executes 0.71x bert's FLOPs)' when the other convention
    puts the two more than FLOPS_MISMATCH apart; '' otherwise."""
    matched = matched_convention(ra, rb)
    other = next(c for c in CONVENTIONS if c != matched)
    r = flops_ratios(ra, rb)[other]
    if r is None or abs(r - 1.0) <= FLOPS_MISMATCH:
        return ""
    what = f"{a} executes {r:.2f}x {b}'s FLOPs" if other == "executed" else \
        f"{a} spends {r:.2f}x {b}'s FLOPs as the paper counts them"
    return f" (matched in the {matched} convention, {what})"


def detect_control(pre: Table) -> str | None:
    """The no-pretraining control: a registered model whose runs do not pretrain (not an external checkpoint)."""
    rows = as_rows(pre).records
    ctrl = next((r for r in rows if not r["pretrains"] and not is_present((r.get("external"),))), None)
    if ctrl is not None:
        return str(ctrl["model"])
    return "scratch" if any(r["model"] == "scratch" for r in rows) else None  # stores written before specs said so


def pair_claims(table: Table, control: str | None, *, level: float = LEVEL) -> list[PairClaim]:
    """Every pair of models on the same task, size and FLOP budget, and each trained model vs the control.

    Pairs come first, then the control claims; a pair's speed-ups are withheld when the control is in
    the comparison and neither model beats it at the full budget (their curves then show seed noise).
    """
    claims: list[PairClaim] = []
    df = as_rows(table)
    full = full_budget(df)
    points = curve_points(df)
    draws: dict[tuple[Any, ...], Any] = {}  # resamples shared by the pairs (stats.bootstrap_speedups)
    settings: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in full.records:  # groupby(["task", "size"], sort=True)
        settings.setdefault((r["task"], r["size"]), []).append(r)
    for (task, size), recs in sorted(settings.items(), key=lambda kv: kv[0]):
        ctrl = next((r for r in reversed(recs) if control and r["model"] == control), None)
        trained = sorted((r for r in recs if r["model"] != control and r["budget_flops"] > 0),
                         key=lambda r: (r["budget_flops"], _claim_rank(r["model"])))
        versus: list[PairClaim] = []
        for r in trained if ctrl is not None else []:
            ci = _gap(df, r, ctrl, level)
            budget = float(r["budget_flops"])
            sentence = claim_sentence(r["model"], f"the {ctrl['model']} control", ci, where=f"{task} ({size})",
                                      at=f"at {budget:.3g} pretraining FLOPs",
                                      claim=f"the claim that pretraining with {r['model']} helps")
            versus.append(PairClaim(task, size, budget, r["model"], ctrl["model"], ci, None, None, True, sentence))
        beats = {(c.a, c.budget_flops) for c in versus if c.verdict == "better"}

        for i, ra in enumerate(trained):  # the objectives against each other first: that is the claim
            for rb in trained[i + 1:]:
                if not math.isclose(ra["budget_flops"], rb["budget_flops"], rel_tol=1e-6):
                    continue
                a, b, budget = ra["model"], rb["model"], float(ra["budget_flops"])
                ci = _gap(df, ra, rb, level)
                ab, ba = _speedups(df, ra, rb, level, points, draws)
                withheld = None
                if ctrl is not None and ab is not None and not {(a, budget), (b, budget)} & beats:
                    withheld = (f"neither {a} nor {b} beats the {ctrl['model']} control at the full budget, so their "
                                f"compute curves show seed noise, not a difference in compute")
                sentence = claim_sentence(a, b, ci, where=f"{task} ({size}, {budget:.3g} FLOPs)", a_to_b=ab,
                                          b_to_a=ba, withheld=withheld, note=mismatch_note(a, b, ra, rb))
                claims.append(PairClaim(task, size, budget, a, b, ci, ab, ba, False, sentence, withheld,
                                        flops_ratios(ra, rb)))
        claims += versus
    return claims


def control_sentence(claims: list[PairClaim], df: Table, control: str | None) -> list[str]:
    """Per task and size: the warning that the budget is too small when no model beats the control."""
    out = []
    by_setting: dict[tuple[str, str], list[PairClaim]] = {}
    for c in claims:
        if c.vs_control:
            by_setting.setdefault((c.task, c.size), []).append(c)
    for (task, size), cs in by_setting.items():
        if all(c.verdict != "better" for c in cs):
            budget = max(c.budget_flops for c in cs)
            out.append(f"{task} ({size}): no model beats the no-pretraining control ({control}) at the "
                       f"{LEVEL:.0%} level, so this budget ({budget:.3g} FLOPs) is too small for pretraining to "
                       f"matter: the run checks the pipeline and is no evidence for or against either objective.")
    return out


def verdict_lines(df: Table, control: str | None) -> list[str]:
    """Plain sentences: each model vs the no-pretraining control, and each pair at matched FLOPs.

    Intervals come from the per-seed scores that comparison_table attaches to the frame.
    """
    claims = pair_claims(df, control)
    lines = [c.sentence for c in claims]
    return lines + control_sentence(claims, df, control)


def claims_frame(claims: list[PairClaim]) -> pd.DataFrame:
    """One row per claim (PairClaim.record): gap, interval, verdict, speed-ups and FLOPs ratios."""
    return Rows([c.record() for c in claims]).frame()
