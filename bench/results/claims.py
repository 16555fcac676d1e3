"""Claims at matched compute: each pair of models, and each model against the no-pretraining control.

Claims compare models on the same task and size at the same FLOP budget, with the pretraining run
as the unit of replication (bench.results.inference): with at least 2 pretraining runs a side, the
gap of mean per-run median scores with a Welch t interval is a claim about the objectives; with one
pretraining run on a side it compares two checkpoints (over fine-tuning seeds) and says so. All the
comparisons of one report are one family, Holm-corrected together; each sentence says over how many,
and gives the smallest gap its design could detect. Fine-tuning runs that did not learn the task
(bench.results.learning) never enter a claim, and the sentence names them.

Where compute curves exist, the compute each model needs to reach the other's best score, with a
bootstrap interval over pretraining runs (each run's median at each checkpoint), in FLOPs and in
wall-clock. A speed-up is withheld, saying why, with fewer than MIN_RUNS_FOR_SPEEDUP pretraining runs
per curve (a lucky early checkpoint of one run is invisible to an interval over its seeds), when
neither model of the pair beats the no-pretraining control at the full budget, or when its interval
spans 1x. When two models matched in one convention differ by more than FLOPS_MISMATCH in the other,
their claim sentence says so with the ratio.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench.results.inference import CHECKPOINTS, Comparison, adjust_family, compare
from bench.results.stats import (Curve, SpeedupCI, bootstrap_speedups, speedup_phrase, withheld_reasons)
from bench.results.tables import (CONVENTIONS, RUN_SCORES, Rows, Table, as_rows, finetune_label, full_budget,
                                  is_present, run_scores_of, seed_scores_of, settings_of)

if TYPE_CHECKING:
    import pandas as pd

FLOPS_MISMATCH = 0.05  # matched in one convention, a pair further apart than this in the other is told so
CLAIM_ORDER = ("electra", "bert")  # the paper's claim: earlier names are claimed to beat later ones
LEVEL = 0.95
MIN_RUNS_FOR_SPEEDUP = 5  # pretraining runs per curve before a speed-up gets an interval over runs (MosaicBERT: 5)


@dataclass(frozen=True)
class PairClaim:
    """Model a vs model b on one task and size at one FLOP budget (b may be the no-pretraining control)."""

    task: str
    size: str
    budget_flops: float
    a: str
    b: str
    ci: Comparison
    a_to_b: SpeedupCI | None  # compute a needs to reach b's best score, with its interval
    b_to_a: SpeedupCI | None
    vs_control: bool
    sentence: str
    withheld: str | None = None  # why no speed-up of this pair is claimed at all
    flops_ratio: dict[str, float | None] = field(default_factory=dict)  # convention -> a's FLOPs / b's
    left_out: str = ""  # the fine-tuning runs left out of this claim because they did not learn, and why
    finetune: str = ""  # the fine-tuning regime ("1,000 ex x 10 ep") where the task has several in the report

    @property
    def setting(self) -> str:
        return setting_text(self.size, self.finetune)

    @property
    def verdict(self) -> str:
        return self.ci.verdict

    @property
    def about(self) -> str:
        """'objectives' (>= 2 pretraining runs a side) or 'checkpoints' (one pretraining run on a side)."""
        return "objectives" if self.ci.objectives else "checkpoints"

    def record(self) -> dict[str, Any]:
        """A flat row for tables and JSON. Speed-ups are b's cost / a's cost (0: never reaches it), with the
        bootstrap interval, in FLOPs and wall-clock; speedup_*_withheld says why one is not claimed ('' if it is)."""
        c = self.ci
        rec: dict[str, Any] = {
            "task": self.task, "size": self.size, "finetune": self.finetune, "budget_flops": self.budget_flops,
            "model_a": self.a,
            "model_b": self.b, "about": self.about, "gap": c.gap, "ci_low": c.low, "ci_high": c.high,
            "p": c.p, "p_holm": c.p_adjusted, "family": c.family, "min_detectable_gap": c.min_detectable(),
            "pretrain_runs_a": c.runs_a, "pretrain_runs_b": c.runs_b, "seeds_a": c.seeds_a, "seeds_b": c.seeds_b,
            "verdict": {"better": f"{self.a} better", "worse": f"{self.b} better", "same": "no difference",
                        "unknown": "cannot tell"}[self.verdict],
            "left_out": self.left_out,
            **{f"flops_ratio_{c_}": self.flops_ratio.get(c_) for c_ in CONVENTIONS},
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


def setting_text(size: str, finetune: str) -> str:
    """The size, and the fine-tuning regime where a task has several: what a sentence says a claim is about."""
    return f"{size}, fine-tuned on {finetune}" if finetune else size


CurveKey = tuple[str, str, str, float, str]  # model, size, task, budget_flops, fine-tuning settings


def curve_points(table: Table) -> dict[CurveKey, list[dict[str, Any]]]:
    """Each model's curve points per size, task and budget: the rows with pretraining FLOPs, in table order, the
    last row of a FLOPs value kept. Read once, so a claim looks its curves up instead of filtering the table."""
    groups: dict[CurveKey, list[dict[str, Any]]] = {}
    for r in as_rows(table).records:
        key = (r["model"], r["size"], r["task"], r["budget_flops"], settings_of(r))
        if is_present(key) and (r["pretrain_flops"] or 0) > 0:
            groups.setdefault(key, []).append(r)
    out = {}
    for key, rows in groups.items():
        last = {r["pretrain_flops"]: i for i, r in enumerate(rows)}  # drop_duplicates(keep="last")
        out[key] = [r for i, r in enumerate(rows) if last[r["pretrain_flops"]] == i]
    return out


def _units(df: Rows, row: dict[str, Any]) -> list[float] | None:
    """A curve point's replicated units: each pretraining run's median over its fine-tuning runs that learned."""
    runs = run_scores_of(df, row)
    if runs is None:
        return None
    return [statistics.median(r) for r in runs if r]


def _curve(df: Rows, row: dict[str, Any],
           points: dict[CurveKey, list[dict[str, Any]]] | None = None) -> Curve | None:
    """A model's compute curve at one budget with each point's per-run medians and wall-clock, or None with
    fewer than two points. Without per-run scores (a frame read back from a file) each point has its median.
    `points`: curve_points(df), when the caller looks up many curves."""
    key = (row["model"], row["size"], row["task"], row["budget_flops"], settings_of(row))
    recs = (curve_points(df) if points is None else points).get(key, []) if is_present(key) else []
    if len(recs) < 2:
        return None
    units = [_units(df, r) or [float(r["score_median"])] for r in recs]
    walls = [float(r["pretrain_wall_s"]) if r.get("pretrain_wall_s") is not None else None for r in recs]
    return Curve.of([float(r["pretrain_flops"]) for r in recs], units, walls)


def _speedups(df: Rows, ra: dict[str, Any], rb: dict[str, Any], level: float,
              points: dict[CurveKey, list[dict[str, Any]]] | None = None,
              draws: dict[tuple[Any, ...], Any] | None = None) -> tuple[SpeedupCI | None, SpeedupCI | None]:
    """Both directions' speed-ups with their intervals over pretraining runs, or (None, None) without two curves."""
    ca, cb = _curve(df, ra, points), _curve(df, rb, points)
    if ca is None or cb is None:
        return None, None
    ab, ba = bootstrap_speedups(ca, cb, level=level, draws=draws)
    if not df.attrs.get(RUN_SCORES):  # medians only: there was nothing to resample
        ab, ba = (dataclasses.replace(x, method="no-seeds", n_resamples=0) for x in (ab, ba))
    return ab, ba


def _speedup_runs_withheld(ab: SpeedupCI | None, a: str, b: str) -> str | None:
    """Why a pair's speed-ups cannot be claimed for want of pretraining runs (None: enough of them)."""
    if ab is None or min(ab.seeds_a, ab.seeds_b) >= MIN_RUNS_FOR_SPEEDUP:
        return None
    return (f"the curves rest on {ab.seeds_a} vs {ab.seeds_b} pretraining run(s) of {a} and {b}, and a speed-up needs "
            f"an interval over pretraining runs (at least {MIN_RUNS_FOR_SPEEDUP} a side: --pretrain-seeds)")


def _runs(df: Rows, row: dict[str, Any]) -> list[list[float]]:
    """A row's fine-tuning scores per pretraining run, runs that did not learn left out; a frame without per-run
    scores (built elsewhere) falls back to its per-seed scores as one run, then to its median."""
    runs = run_scores_of(df, row)
    if runs is not None:
        return runs
    seeds = seed_scores_of(df, row)
    return [list(seeds)] if seeds else [[float(row["score_median"])]]


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

    Pairs come first, then the control claims. Every comparison of the report is one family: p-values are
    Holm-adjusted together before any verdict. A pair's speed-ups are withheld when the control is in the
    comparison and neither model beats it at the full budget (their curves then show seed noise).
    """
    df = as_rows(table)
    full = full_budget(df)
    points = curve_points(df)
    draws: dict[tuple[Any, ...], Any] = {}  # resamples shared by the pairs (stats.bootstrap_speedups)
    settings: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in full.records:  # groupby(["task", "size", "settings"], sort=True): a fine-tuning regime is compared alone
        settings.setdefault((r["task"], r["size"], settings_of(r)), []).append(r)
    regimes = collections.Counter((task, size) for task, size, _ in settings)
    drafts: list[dict[str, Any]] = []  # each comparison before the family's correction
    for (task, size, regime), recs in sorted(settings.items(), key=lambda kv: kv[0]):
        label = finetune_label(regime) if regimes[(task, size)] > 1 else ""  # the sentences must say which regime
        ctrl = next((r for r in reversed(recs) if control and r["model"] == control), None)
        trained = sorted((r for r in recs if r["model"] != control and r["budget_flops"] > 0),
                         key=lambda r: (r["budget_flops"], _claim_rank(r["model"])))
        versus = []
        for r in trained if ctrl is not None else []:
            versus.append(dict(task=task, size=size, label=label, budget=float(r["budget_flops"]), ra=r, rb=ctrl,
                               vs_control=True))
        pairs = []
        for i, ra in enumerate(trained):  # the objectives against each other first: that is the claim
            for rb in trained[i + 1:]:
                if math.isclose(ra["budget_flops"], rb["budget_flops"], rel_tol=1e-6):
                    pairs.append(dict(task=task, size=size, label=label, budget=float(ra["budget_flops"]), ra=ra, rb=rb,
                                      vs_control=False, control=ctrl))
        drafts += pairs + versus
    comparisons = []
    for d in drafts:
        a_runs, b_runs = _runs(df, d["ra"]), _runs(df, d["rb"])
        d["left_out"] = _left_out(d["ra"], d["rb"])
        d["empty"] = [row["model"] for row, runs in ((d["ra"], a_runs), (d["rb"], b_runs)) if not any(runs)]
        if d["empty"]:  # a side with no run that learned: nothing to compare, and nothing to count in the family
            comparisons.append(_nothing(a_runs, b_runs, level))
        else:
            comparisons.append(compare(a_runs, b_runs, level=level))
    comparisons = adjust_family(comparisons)

    claims: list[PairClaim] = []
    beats = {(d["ra"]["model"], d["budget"], d["task"], d["size"], d["label"]) for d, c in zip(drafts, comparisons)
             if d["vs_control"] and c.verdict == "better"}
    for d, c in zip(drafts, comparisons):
        ra, rb, task, size, label, budget = d["ra"], d["rb"], d["task"], d["size"], d["label"], d["budget"]
        setting = setting_text(size, label)
        a, b = ra["model"], rb["model"]
        if d["vs_control"]:
            sentence = claim_sentence(a, f"the {b} control", c, where=f"{task} ({setting})",
                                      at=f"at {budget:.3g} pretraining FLOPs",
                                      claim=f"the claim that pretraining with {a} helps", left_out=d["left_out"],
                                      empty=d["empty"])
            claims.append(PairClaim(task, size, budget, a, b, c, None, None, True, sentence, left_out=d["left_out"],
                                    finetune=label))
            continue
        ab, ba = _speedups(df, ra, rb, level, points, draws)
        withheld = _speedup_runs_withheld(ab, a, b)
        ctrl = d["control"]
        if withheld is None and ctrl is not None and ab is not None and \
                not {(a, budget, task, size, label), (b, budget, task, size, label)} & beats:
            withheld = (f"neither {a} nor {b} beats the {ctrl['model']} control at the full budget, so their "
                        f"compute curves show seed noise, not a difference in compute")
        if c.verdict == "unknown" and ab is not None:
            withheld = withheld or "the scores cannot be compared (see above)"
        sentence = claim_sentence(a, b, c, where=f"{task} ({setting}, {budget:.3g} FLOPs)", a_to_b=ab, b_to_a=ba,
                                  withheld=withheld, note=mismatch_note(a, b, ra, rb), left_out=d["left_out"],
                                  empty=d["empty"])
        claims.append(PairClaim(task, size, budget, a, b, c, ab, ba, False, sentence, withheld, flops_ratios(ra, rb),
                                d["left_out"], finetune=label))
    return claims


def _nothing(a_runs: list[list[float]], b_runs: list[list[float]], level: float) -> Comparison:
    """A comparison that cannot be made (a side without a run that learned): no test, no family member."""
    flat_a, flat_b = [x for r in a_runs for x in r], [x for r in b_runs for x in r]
    return Comparison(math.nan, math.nan, math.nan, level, math.nan, math.nan, CHECKPOINTS,
                      sum(1 for r in a_runs if r), sum(1 for r in b_runs if r), len(flat_a), len(flat_b),
                      len(flat_a), len(flat_b), math.nan, "too-few")


def _left_out(ra: dict[str, Any], rb: dict[str, Any]) -> str:
    """'electra: 3/3 fine-tuning runs did not learn (every dev prediction is one class)', or ''."""
    parts = []
    for r in (ra, rb):
        if r.get("not_learned"):
            count, _, why = r["not_learned"].partition(": ")
            parts.append(f"{r['model']}: {count} fine-tuning runs did not learn ({why})")
    return "; ".join(parts)


def _pct(level: float) -> str:
    return f"{level:.0%}"


def _p(p: float) -> str:
    """'p = 0.012', or 'p < 0.0001'."""
    return "p < 0.0001" if p < 1e-4 else f"p = {p:.2g}"


def comparison_phrase(c: Comparison) -> str:
    """The numbers behind a claim: the units, the gap, its interval and test, the family's correction."""
    if c.objectives:
        what = (f"mean of per-run median scores over {c.runs_a} vs {c.runs_b} pretraining runs "
                f"({c.seeds_a} vs {c.seeds_b} fine-tuning runs in all)")
    else:
        what = f"mean score over {c.seeds_a} vs {c.seeds_b} fine-tuning seeds"
    if not c.testable:
        return f"{what}, gap {c.gap:+.4f}"
    fam = (f"; Holm-adjusted over the report's {c.family} comparisons: {_p(c.p_adjusted)}" if c.family > 1
           else ", the report's only comparison")
    return (f"{what}, gap {c.gap:+.4f} ({_pct(c.level)} CI {c.low:+.4f} to {c.high:+.4f}, Welch t with {c.df:.3g} df; "
            f"{_p(c.p)}{fam})")


def _detectable(c: Comparison) -> str:
    mde = c.min_detectable()
    if mde != mde:
        return ""
    at = f"after correcting for {c.family} comparisons" if c.family > 1 else f"at the {_pct(1 - c.level)} level"
    return f"; the smallest gap this design detects with 80% power {at} is {mde:.4f}"


def claim_sentence(a: str, b: str, c: Comparison, *, where: str, at: str = "at matched FLOPs",
                   claim: str | None = None, a_to_b: SpeedupCI | None = None, b_to_a: SpeedupCI | None = None,
                   withheld: str | None = None, note: str = "", left_out: str = "",
                   empty: list[str] | None = None) -> str:
    """One plain sentence: does A beat B at matched compute here, how sure, about what, and what was left out.

    `where` names the setting; `at` how the two were matched; `claim` what is being tested (default "the claim
    that A beats B"); `note` follows `at`; `withheld` is a reason to claim no speed-up at all; `left_out` names
    fine-tuning runs that did not learn; `empty` the models none of whose runs learned.
    """
    claim = claim or f"the claim that {a} beats {b}"
    head = f"{where}: {a} vs {b} {at}{note}"
    if empty:
        return (f"{head}: no verdict, since {' and '.join(empty)} did not learn the task in any fine-tuning run; "
                f"left out: {left_out}; a run that did not learn is a finding about that run, not evidence about "
                f"its objective.")
    v = c.verdict
    if not c.objectives:
        head += (": one pretraining run on a side, so this compares two checkpoints, not two objectives "
                 "(another pretraining run may differ by more; --pretrain-seeds 2 or more makes it a claim about "
                 "the objectives)")
        control = b.startswith("the ") and b.endswith(" control")
        other = f"the untrained {b[4:-8]} encoder" if control else f"this {b} checkpoint"
        claim = f"the claim that this {a} checkpoint fine-tunes better than {other}"
    body = f"; {comparison_phrase(c)}"
    if v == "unknown":
        body += f", so this run cannot judge {claim} (a side has fewer than 2 {c.unit} to measure noise by)"
    elif v == "same":
        if c.excludes_zero:
            body += (f"; the interval excludes 0 on its own, but not after correcting for the {c.family} comparisons "
                     f"of this report, so {claim} is neither supported nor refuted")
        else:
            body += f"; no measurable difference at this scale, so {claim} is neither supported nor refuted"
    elif v == "better":
        body += f"; so {claim} holds at this scale"
    else:
        body += f"; so {claim} does not hold at this scale: {b} is better"
    body += _detectable(c)
    extra: list[str] = []
    if a_to_b is not None and b_to_a is not None:
        why_ab, why_ba = withheld_reasons(a_to_b, b_to_a, withheld)
        if why_ab and why_ab == why_ba:  # one reason for the pair: said once
            extra = [f"no compute speed-up is claimed: {why_ab}"]
        else:
            for x, y, s, why in ((a, b, a_to_b, why_ab), (b, a, b_to_a, why_ba)):
                extra.append(f"no speed-up is claimed for {x} reaching {y}'s best score ({s.point.target:.4f}): {why}"
                             if why else speedup_phrase(x, y, s))
    if left_out:
        extra.append(f"left out as runs that did not learn: {left_out}")
    return head + body + "".join("; " + e for e in extra) + "."


def control_sentence(claims: list[PairClaim], df: Table, control: str | None) -> list[str]:
    """Per task and size: the warning that the budget is too small when no model beats the control."""
    out = []
    by_setting: dict[tuple[str, str], list[PairClaim]] = {}
    for c in claims:
        if c.vs_control:
            by_setting.setdefault((c.task, c.setting), []).append(c)
    for (task, size), cs in by_setting.items():
        if all(c.verdict == "same" for c in cs):  # judged, and none better: not merely unjudgeable
            budget = max(c.budget_flops for c in cs)
            out.append(f"{task} ({size}): no model beats the no-pretraining control ({control}) at the "
                       f"{LEVEL:.0%} level after correction, so this budget ({budget:.3g} FLOPs) is too small for "
                       f"pretraining to matter here: the run checks the pipeline and is no evidence for or against "
                       f"either objective.")
    return out


def verdict_lines(df: Table, control: str | None) -> list[str]:
    """Plain sentences: each model vs the no-pretraining control, and each pair at matched FLOPs."""
    claims = pair_claims(df, control)
    lines = [c.sentence for c in claims]
    return lines + control_sentence(claims, df, control)


def claims_frame(claims: list[PairClaim]) -> pd.DataFrame:
    """One row per claim (PairClaim.record): gap, interval, verdict, speed-ups and FLOPs ratios."""
    return Rows([c.record() for c in claims]).frame()
