"""Reports from the store alone: the comparison table, a leaderboard, the efficiency claim per pair of models.

The comparison table has one row per model, size, task and pretraining-FLOPs point (curve
points included). Claims compare models on the same task and size at the same FLOP budget
(and each against the no-pretraining control): the median-score gap with a bootstrap interval
over fine-tuning seeds, and, where compute curves exist, the compute each needs to reach the
other's best score, with a bootstrap interval over seeds, in FLOPs and in wall-clock. Nothing
here trains or recomputes a run.

FLOPs in two conventions. `pretrain_flops` is counted in the convention the budget was matched
in (`budget_convention`: what "matched FLOPs" means for that row), and the table always shows
both conventions beside it as well, `pretrain_flops_paper` and `pretrain_flops_executed`, so one
of the two repeats `pretrain_flops` and neither is ever "the other one" by position. A curve
point's FLOPs in each convention are its step times the run's per-step cost in that convention
(the `flops_per_step_*` metrics; stores without them scale the run's totals by steps). When two
models matched in one convention differ by more than FLOPS_MISMATCH in the other, their claim
sentence says so with the ratio.

Wall-clock per point (`pretrain_wall_s`) is the checkpoint's own time where the checkpoint series
records it, else the time at that step interpolated from the timestamps of the logged pretraining
series (the loop stamps every logging step), else the run's wall time pro rata of steps.

A speed-up is printed with its interval and withheld, saying why, when neither model of the
pair beats the no-pretraining control at the full budget (where a control is in the comparison:
the curves then show seed noise), when its interval spans 1x, or when there are no per-seed
scores to resample.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

import numpy as np
import pandas as pd

from bench.results.stats import (MIN_SEEDS_FOR_CLAIM, Curve, GapCI, SpeedupCI, bootstrap_median_gap,
                                 bootstrap_speedups, claim_sentence, claims_made, range_gap, verdict,
                                 withheld_reasons)
from bench.results.store import Store, canonical_json

COLUMNS = ["model", "size", "task", "budget_flops", "pretrain_steps", "pretrain_flops", "pretrain_flops_paper",
           "pretrain_flops_executed", "pretrain_wall_s", "tokens_per_s", "finetune_wall_s", "score_median", "score_min",
           "score_max", "seeds"]
CONVENTIONS = ("paper", "executed")  # pretrain_flops_<convention>: both always shown beside the budget's
FLOPS_MISMATCH = 0.05  # matched in one convention, a pair further apart than this in the other is told so
FORMATS = ("md", "html", "csv", "latex", "json")
GLUE_TASKS = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")
CLAIM_ORDER = ("electra", "bert")  # the paper's claim: earlier names are claimed to beat later ones
LOSS_SERIES = ("loss", "mlm_loss", "gen_loss", "disc_loss", "disc_base_entropy")
GLUE_PAPER = "glue_paper_scores"  # df.attrs key: same key -> median of the metric the paper's GLUE score uses
# The ELECTRA paper's GLUE score: Spearman for STS-B, Matthews for CoLA, accuracy for the rest
# (so MRPC and QQP count accuracy, not their F1 headline), averaged without WNLI.
PAPER_GLUE_METRIC = {"cola": "matthews_correlation", "stsb": "spearmanr", "mrpc": "accuracy", "qqp": "accuracy"}
GLUE_AVERAGE_EXCLUDES = ("wnli",)
SEED_SCORES = "seed_scores"  # df.attrs key: (model, size, task, budget, pretrain_flops) -> per-seed scores
LEVEL = 0.95


# --- frames straight from the store ---------------------------------------------------------------


def pretrain_frame(store: Store) -> pd.DataFrame:
    rows = []
    for r in store.runs(kind="pretrain"):
        m = store.final_metrics(r["id"])
        spec = r["spec"]
        conv = spec.get("convention", "paper")
        ckpts = store.series(r["id"], "checkpoint")
        walls = _checkpoint_walls(store, r["id"], ckpts, m)
        points = {p.value: (p.step, p.flops, w) for p, w in zip(ckpts, walls)}  # fraction -> (step, FLOPs, wall)
        rows.append({
            "pretrain_id": r["id"], "model": r["model"], "size": r["size"], "budget_flops": r["budget"],
            "budget_text": spec.get("budget", {}).get("text"), "convention": conv,
            "steps": m.get("steps", 0), "flops": m.get(f"flops_{conv}", 0.0),
            "flops_paper": m.get("flops_paper", 0.0), "flops_executed": m.get("flops_executed", 0.0),
            "flops_per_step_paper": m.get("flops_per_step_paper", math.nan),
            "flops_per_step_executed": m.get("flops_per_step_executed", math.nan),
            "wall_s": m.get("wall_s", 0.0), "tokens_per_s": m.get("tokens_per_s", 0.0),
            "params": m.get("params", math.nan), "encoder_params": m.get("encoder_params", math.nan),
            "pretrains": bool(spec.get("pretrains", True)), "external": spec.get("external"),
            "points": points, "code_version": r["code_version"], "git_sha": r["git_sha"],
            "device": r["environment"].get("device"), "started_at": r["started_at"],
        })
    return pd.DataFrame(rows)


def wall_at_steps(known: Iterable[tuple[float, float]], steps: Iterable[float]) -> list[float]:
    """Seconds at each of `steps`, linear between the known (step, seconds) points; the run starts at (0, 0)."""
    pts = dict([(0.0, 0.0)] + [(float(k), float(w)) for k, w in known])  # a repeated step keeps its last time
    xs = sorted(pts)
    return [float(v) for v in np.interp([float(x) for x in steps], xs, [pts[x] for x in xs])]


def _checkpoint_walls(store: Store, run_id: str, ckpts: list[Any], m: dict[str, float]) -> list[float]:
    """Each checkpoint's pretraining wall-clock: as recorded with the checkpoint, else interpolated from the
    logged series' timestamps and the run's end (steps, wall_s)."""
    if all(p.wall_s is not None for p in ckpts):
        return [float(p.wall_s) for p in ckpts]
    known = [(x.step, x.wall_s) for x in store.series(run_id, "loss") if x.wall_s is not None]
    if m.get("steps") and m.get("wall_s"):
        known.append((m["steps"], m["wall_s"]))
    walls = wall_at_steps(known, [p.step for p in ckpts])
    return [float(p.wall_s) if p.wall_s is not None else w for p, w in zip(ckpts, walls)]


def flops_in(parent: dict[str, Any], step: float, convention: str) -> float:
    """A point's pretraining FLOPs in `convention`: step x the run's per-step cost, else its total pro rata."""
    per = parent.get(f"flops_per_step_{convention}")
    if per is not None and per == per:
        return float(step) * float(per)
    total, steps = float(parent.get(f"flops_{convention}") or 0.0), parent.get("steps") or 0
    return total * float(step) / float(steps) if steps else total


def finetune_frame(store: Store) -> pd.DataFrame:
    """One row per finished fine-tuning run (one seed)."""
    pre = {r["pretrain_id"]: r for r in pretrain_frame(store).to_dict("records")}
    rows = []
    for r in store.runs(kind="finetune"):
        m = store.final_metrics(r["id"])
        parent = pre.get(r["parent_id"], {})
        frac = r["spec"].get("fraction", 1.0)
        step, flops, wall = (parent.get("points") or {}).get(frac, (None, None, None))
        if step is None:  # no checkpoint series (controls, external checkpoints): the run's totals
            step, flops, wall = parent.get("steps", 0), parent.get("flops", 0.0), parent.get("wall_s", 0.0)
        row = {"run_id": r["id"], "pretrain_id": r["parent_id"], "model": r["model"], "size": r["size"],
               "task": r["task"], "seed": r["seed"], "fraction": frac,
               "budget_flops": parent.get("budget_flops", 0.0), "pretrain_steps": step, "pretrain_flops": flops,
               **{f"pretrain_flops_{c}": flops_in(parent, step, c) if parent else 0.0 for c in CONVENTIONS},
               "pretrain_wall_s": wall,
               "tokens_per_s": parent.get("tokens_per_s", 0.0), "score": m.get("score"),
               "finetune_wall_s": m.get("train_wall_s", 0.0) + m.get("eval_wall_s", 0.0),
               "code_version": r["code_version"],
               # runs with other fine-tuning settings (e.g. --epochs) are other rows, never extra seeds
               "settings": canonical_json(r["spec"].get("settings", {})),
               # runs on other task data (a file edited since) are other rows too
               "task_data": r["spec"].get("task_data", ""),
               # and runs of another version of a plug-in task's code
               "task_code": r["spec"].get("code", "")}
        row.update({k: v for k, v in m.items() if k.startswith("metric_")})
        rows.append(row)
    return pd.DataFrame(rows)


def _near(value: float, wanted: list[float]) -> bool:
    return any(abs(value - w) <= 1e-6 * max(abs(w), 1) for w in wanted)


def filter_finetune(ft: pd.DataFrame, *, run_ids: Iterable[str] | None = None,
                    pretrain_ids: Iterable[str] | None = None,
                    tasks: Iterable[str] | None = None, models: Iterable[str] | None = None,
                    sizes: Iterable[str] | None = None, budgets: Iterable[float] | None = None,
                    fractions: Iterable[float] | None = None) -> pd.DataFrame:
    """The report's filters. A budget filter keeps runs that spent no pretraining FLOPs (the control)."""
    if ft.empty:
        return ft
    for col, wanted in (("run_id", run_ids), ("pretrain_id", pretrain_ids), ("task", tasks), ("model", models),
                        ("size", sizes), ("fraction", fractions)):
        if wanted is not None:
            ft = ft[ft[col].isin(list(wanted))]
    if budgets is not None:
        wanted = [float(b) for b in budgets]
        # a no-pretraining control matches every budget: it is the baseline of each comparison
        ft = ft[ft["budget_flops"].apply(lambda b: not b or _near(b, wanted))]
    return ft


def comparison_from(ft: pd.DataFrame) -> pd.DataFrame:
    """Aggregate per-seed rows to the comparison table; per-seed scores go to df.attrs[SEED_SCORES]."""
    if ft.empty:
        df = pd.DataFrame(columns=COLUMNS)
        df.attrs[SEED_SCORES] = {}
        return df
    rows, scores_by_key, glue_by_key = [], {}, {}
    for _, g in ft.groupby(["pretrain_id", "task", "fraction", "settings", "task_data", "task_code"], sort=False):
        first = g.iloc[0]
        scores = [float(s) for s in g["score"]]
        rows.append({
            "model": first["model"], "size": first["size"], "task": first["task"],
            "budget_flops": first["budget_flops"], "pretrain_steps": int(first["pretrain_steps"]),
            "pretrain_flops": first["pretrain_flops"], "pretrain_flops_paper": first["pretrain_flops_paper"],
            "pretrain_flops_executed": first["pretrain_flops_executed"], "pretrain_wall_s": first["pretrain_wall_s"],
            "tokens_per_s": first["tokens_per_s"], "finetune_wall_s": statistics.median(g["finetune_wall_s"]),
            "score_median": statistics.median(scores), "score_min": min(scores), "score_max": max(scores),
            "seeds": len(scores),
        })
        # groups come in run order, so a later run of the same point (new code version) wins
        scores_by_key[_key(rows[-1])] = scores
        col = f"metric_{PAPER_GLUE_METRIC.get(first['task'], 'accuracy')}"
        if col in g and g[col].notna().all():
            glue_by_key[_key(rows[-1])] = statistics.median(float(v) for v in g[col])
    df = pd.DataFrame(rows, columns=COLUMNS)
    df = df.sort_values(["task", "size", "model", "pretrain_flops"], kind="stable").reset_index(drop=True)
    df.attrs[SEED_SCORES] = scores_by_key
    df.attrs[GLUE_PAPER] = glue_by_key
    return df


def comparison_table(store: Store, *, run_ids: Iterable[str] | None = None,
                     pretrain_ids: Iterable[str] | None = None, tasks: Iterable[str] | None = None,
                     models: Iterable[str] | None = None, sizes: Iterable[str] | None = None,
                     budgets: Iterable[float] | None = None, fractions: Iterable[float] | None = None) -> pd.DataFrame:
    """The comparison: seeds aggregated to median, min and max of the headline score.

    Columns exactly COLUMNS; the per-seed scores ride along in `df.attrs["seed_scores"]`.
    """
    ft = filter_finetune(finetune_frame(store), run_ids=run_ids, pretrain_ids=pretrain_ids, tasks=tasks, models=models,
                         sizes=sizes, budgets=budgets, fractions=fractions)
    return comparison_from(ft)


def _key(row: dict[str, Any] | pd.Series) -> tuple[str, str, str, float, float]:
    return (str(row["model"]), str(row["size"]), str(row["task"]), float(row["budget_flops"] or 0.0),
            float(row["pretrain_flops"]))


def short_error(error: str | None) -> str:
    """A run's error in a few words for a table cell: a traceback's last line, or the first clause."""
    text = (error or "failed").strip()
    if text.startswith("Traceback"):
        text = text.splitlines()[-1]
    first = text.split(": ", 1)[0] if text.startswith(("pretraining diverged", "interrupted")) else text
    return first if len(first) <= 80 else first[:77] + "..."


def failed_rows(store: Store, pretrain_ids: Iterable[str], finetune_ids: Iterable[str],
                tasks: Iterable[str]) -> pd.DataFrame:
    """Rows in COLUMNS for planned configurations without a result: a failed pretraining run (once
    per task) and a fine-tuning point none of whose seeds finished. The reason stands where the
    score would."""
    rows = []
    for pid in pretrain_ids:
        r = store.run(pid)
        if r is None or r["status"] == "done":
            continue
        error = short_error(r["error"]) if r["status"] == "failed" else "not finished"
        reason = error if error.startswith("pretraining") else f"pretraining {error}"
        for task in tasks:
            rows.append(_failed_row(r, task, reason))
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for fid in finetune_ids:
        r = store.run(fid)
        if r is not None:
            groups.setdefault((r["parent_id"], r["task"], r["spec"].get("fraction", 1.0)), []).append(r)
    for runs in groups.values():
        if runs and not any(r["status"] == "done" for r in runs):
            failed = [r for r in runs if r["status"] == "failed"]
            if failed:
                rows.append(_failed_row(failed[0], failed[0]["task"], f"fine-tuning {short_error(failed[0]['error'])}"))
    return pd.DataFrame(rows, columns=COLUMNS)


def _failed_row(r: dict[str, Any], task: str, reason: str) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update({"model": r["model"], "size": r["size"], "task": task, "budget_flops": r["budget"],
                "score_median": reason, "seeds": 0})
    return row


def seed_scores_of(df: pd.DataFrame, row: dict[str, Any]) -> list[float] | None:
    return df.attrs.get(SEED_SCORES, {}).get(_key(row))


# --- pairwise claims --------------------------------------------------------------------------------


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


def _full_budget(df: pd.DataFrame) -> pd.DataFrame:
    """Each model's full-budget point per task, size and budget; older duplicate runs dropped."""
    if df.empty:
        return df
    keys = ["model", "size", "task", "budget_flops"]
    top = df["pretrain_flops"] == df.groupby(keys)["pretrain_flops"].transform("max")
    return df[top].drop_duplicates(keys, keep="last")


def _curve(df: pd.DataFrame, row: dict[str, Any]) -> Curve | None:
    """A model's compute curve at one budget with each point's per-seed scores and wall-clock, or None with
    fewer than two points. Without per-seed scores (a frame read back from a file) each point has its median."""
    pts = df[(df["model"] == row["model"]) & (df["size"] == row["size"]) & (df["task"] == row["task"])
             & (df["budget_flops"] == row["budget_flops"]) & (df["pretrain_flops"] > 0)]
    pts = pts.drop_duplicates("pretrain_flops", keep="last")
    if len(pts) < 2:
        return None
    recs = pts.to_dict("records")
    seeds = [seed_scores_of(df, r) or [float(r["score_median"])] for r in recs]
    walls = [float(r["pretrain_wall_s"]) if r.get("pretrain_wall_s") is not None else None for r in recs]
    return Curve.of([float(r["pretrain_flops"]) for r in recs], seeds, walls)


def _speedups(df: pd.DataFrame, ra: dict[str, Any], rb: dict[str, Any],
              level: float) -> tuple[SpeedupCI | None, SpeedupCI | None]:
    """Both directions' speed-ups with their intervals, or (None, None) without two curves."""
    ca, cb = _curve(df, ra), _curve(df, rb)
    if ca is None or cb is None:
        return None, None
    ab, ba = bootstrap_speedups(ca, cb, level=level)
    if not df.attrs.get(SEED_SCORES):  # medians only: there was nothing to resample
        ab, ba = (dataclasses.replace(x, method="no-seeds", n_resamples=0) for x in (ab, ba))
    return ab, ba


def _gap(df: pd.DataFrame, ra: dict[str, Any], rb: dict[str, Any], level: float) -> GapCI:
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


def detect_control(pre: pd.DataFrame) -> str | None:
    """The no-pretraining control: a registered model whose runs do not pretrain (not an external checkpoint)."""
    if pre.empty:
        return None
    ctrl = pre[(~pre["pretrains"].astype(bool)) & pre["external"].isna()]
    if not ctrl.empty:
        return str(ctrl["model"].iloc[0])
    return "scratch" if (pre["model"] == "scratch").any() else None  # stores written before specs said so


def pair_claims(df: pd.DataFrame, control: str | None, *, level: float = LEVEL) -> list[PairClaim]:
    """Every pair of models on the same task, size and FLOP budget, and each trained model vs the control.

    Pairs come first, then the control claims; a pair's speed-ups are withheld when the control is in
    the comparison and neither model beats it at the full budget (their curves then show seed noise).
    """
    claims: list[PairClaim] = []
    full = _full_budget(df)
    for (task, size), g in full.groupby(["task", "size"], sort=True):
        recs = g.to_dict("records")
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
                ab, ba = _speedups(df, ra, rb, level)
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


def control_sentence(claims: list[PairClaim], df: pd.DataFrame, control: str | None) -> list[str]:
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


def verdict_lines(df: pd.DataFrame, control: str | None) -> list[str]:
    """Plain sentences: each model vs the no-pretraining control, and each pair at matched FLOPs.

    Intervals come from the per-seed scores that comparison_table attaches to the frame.
    """
    claims = pair_claims(df, control)
    lines = [c.sentence for c in claims]
    return lines + control_sentence(claims, df, control)


# --- leaderboard ------------------------------------------------------------------------------------


def leaderboard(df: pd.DataFrame, pre: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per model configuration (model, size, budget), ranked by the headline score.

    The headline is the mean over tasks of each task's median score at the full budget; for GLUE
    tasks the paper's GLUE score (PAPER_GLUE_METRIC, WNLI left out). Configurations missing a task
    rank after complete ones.
    """
    full = _full_budget(df)
    if full.empty:
        return pd.DataFrame(columns=["rank", "model", "size", "budget_flops", "params", "pretrain_flops",
                                     "pretrain_wall_s", "tokens_per_s", "score", "seeds"])
    tasks = sorted(full["task"].unique())
    score_col = score_column(tasks)
    info = _params_by_config(pre)
    rows = []
    glue_paper = df.attrs.get(GLUE_PAPER, {})
    for (model, size, budget), g in full.groupby(["model", "size", "budget_flops"], sort=False):
        per_task = dict(zip(g["task"], g["score_median"]))
        averaged = per_task
        if score_col == "glue_avg":  # the paper's metric per task, WNLI left out
            averaged = {t: glue_paper.get(_key(r), r["score_median"]) for r in g.to_dict("records")
                        if (t := r["task"]) not in GLUE_AVERAGE_EXCLUDES} or per_task
        row: dict[str, Any] = {"model": model, "size": size, "budget_flops": float(budget),
                               "params": info.get((model, size, float(budget)), math.nan),
                               "pretrain_flops": float(g["pretrain_flops"].max()),
                               "pretrain_wall_s": float(g["pretrain_wall_s"].max()),
                               "tokens_per_s": float(g["tokens_per_s"].max())}
        for t in tasks:
            row[t] = per_task.get(t, math.nan)
        row[score_col] = statistics.fmean(averaged.values())
        row["seeds"] = int(g["seeds"].min())
        row["_complete"] = len(per_task) == len(tasks)
        rows.append(row)
    board = pd.DataFrame(rows).sort_values(["_complete", score_col], ascending=[False, False], kind="stable")
    board = board.drop(columns="_complete").reset_index(drop=True)
    board.insert(0, "rank", range(1, len(board) + 1))
    if len(tasks) == 1:  # one task: its column is the headline already
        board = board.drop(columns=tasks)
    return board


def score_column(tasks: list[str]) -> str:
    if len(tasks) <= 1:
        return "score"
    return "glue_avg" if all(t in GLUE_TASKS for t in tasks) else "avg_score"


def _params_by_config(pre: pd.DataFrame | None) -> dict[tuple[str, str, float], float]:
    """Encoder parameters (what is fine-tuned) per configuration; the latest run wins."""
    if pre is None or pre.empty:
        return {}
    return {(r["model"], r["size"], float(r["budget_flops"] or 0.0)): r["encoder_params"]
            for r in pre.to_dict("records")}


# --- the whole report ----------------------------------------------------------------------------


@dataclass
class Report:
    """Everything a report shows, read from the store once."""

    comparison: pd.DataFrame  # COLUMNS, per-seed scores in attrs
    leaderboard: pd.DataFrame
    claims: list[PairClaim]
    lines: list[str]  # claim sentences, then the control warning where it applies
    seeds: pd.DataFrame  # one row per fine-tuning run (seed) in the report
    losses: pd.DataFrame  # pretraining series: model, size, budget_flops, name, step, flops, wall_s, value
    runs: list[dict[str, Any]]  # provenance: every run in the report, done or failed
    control: str | None
    convention: str
    score_labels: dict[str, str]  # task -> name of its headline metric
    source: str = ""
    generated_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    filters: dict[str, Any] = field(default_factory=dict)


def build_report(store: Store, *, tasks: Iterable[str] | None = None, models: Iterable[str] | None = None,
                 sizes: Iterable[str] | None = None, budgets: Iterable[float] | None = None,
                 control: str | None = "auto") -> Report:
    """Read the store once and compute every table, claim and series the renderers need.

    `control="auto"` takes the store's no-pretraining model (e.g. scratch); None drops the control claims.
    """
    filters = {"task": list(tasks or []), "model": list(models or []), "size": list(sizes or []),
               "budget": list(budgets or [])}
    pre = pretrain_frame(store)
    if control == "auto":
        control = detect_control(pre)
    ft = filter_finetune(finetune_frame(store), tasks=tasks, models=models, sizes=sizes, budgets=budgets)
    df = comparison_from(ft)
    used_pre = pre[pre["pretrain_id"].isin(set(ft["pretrain_id"]))] if not ft.empty else pre.iloc[0:0]
    claims = pair_claims(df, control)
    runs = _provenance(store, set(ft["run_id"]) if not ft.empty else set(), set(used_pre.get("pretrain_id", [])),
                       tasks=tasks, models=models, sizes=sizes)
    convs = sorted(set(used_pre["convention"])) if not used_pre.empty else ["paper"]
    return Report(
        comparison=df, leaderboard=leaderboard(df, used_pre), claims=claims,
        lines=[c.sentence for c in claims] + control_sentence(claims, df, control),
        seeds=ft.reset_index(drop=True), losses=_losses(store, used_pre), runs=runs, control=control,
        convention="/".join(convs), score_labels=_score_labels(ft), source=str(store.path), filters=filters,
    )


def _losses(store: Store, pre: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for r in pre.to_dict("records"):
        for name in LOSS_SERIES:
            for m in store.series(r["pretrain_id"], name):
                rows.append({"pretrain_id": r["pretrain_id"], "model": r["model"], "size": r["size"],
                             "budget_flops": r["budget_flops"], "name": name, "step": m.step, "flops": m.flops,
                             "wall_s": m.wall_s, "value": m.value})
    return pd.DataFrame(rows, columns=["pretrain_id", "model", "size", "budget_flops", "name", "step", "flops",
                                       "wall_s", "value"])


def _score_labels(ft: pd.DataFrame) -> dict[str, str]:
    """Each task's headline metric: the metric_<name> equal to `score` in every run (the first if several)."""
    out = {}
    if ft.empty:
        return out
    for task, g in ft.groupby("task"):
        names = [c for c in g.columns if c.startswith("metric_") and g[c].notna().all()
                 and all(math.isclose(a, b, rel_tol=0, abs_tol=1e-12) for a, b in zip(g[c], g["score"]))]
        out[str(task)] = names[0][len("metric_"):] if names else "score"
    return out


def _provenance(store: Store, ft_ids: set[str], pt_ids: set[str], *, tasks: Iterable[str] | None,
                models: Iterable[str] | None, sizes: Iterable[str] | None) -> list[dict[str, Any]]:
    """Every run behind the report, plus failed runs matching the filters (so failures stay visible)."""
    runs = [r for r in store.runs(status="done") if r["id"] in ft_ids or r["id"] in pt_ids]
    for r in store.runs(status="failed"):
        if ((not tasks or r["task"] in tasks or r["task"] is None) and (not models or r["model"] in models)
                and (not sizes or r["size"] in sizes)):
            runs.append(r)
    for r in runs:
        if r["kind"] == "finetune" and r["status"] == "done":
            r["metrics"] = store.final_metrics(r["id"])
    return runs


# --- rendering ----------------------------------------------------------------------------------------


def _fmt_num(v: Any, kind: str) -> str:
    if isinstance(v, str):  # a failed row says why where its score would be
        return v
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if kind == "flops":
        return f"{v:.3g}"
    if kind == "count":
        return f"{v / 1e6:.1f}M" if v >= 1e6 else f"{v:,.0f}"
    if kind == "time":
        return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"
    if kind == "score":
        return f"{v:.4f}"
    return str(v)


DISPLAY_KINDS = {"budget_flops": "flops", "pretrain_flops": "flops", "pretrain_flops_paper": "flops",
                 "pretrain_flops_executed": "flops", "pretrain_wall_s": "time",
                 "finetune_wall_s": "time", "tokens_per_s": "time", "score_median": "score", "score_min": "score",
                 "score_max": "score", "params": "count", "score": "score", "glue_avg": "score",
                 "avg_score": "score", "gap": "score", "ci_low": "score", "ci_high": "score",
                 "p_a_ahead": "score",
                 **{f"{w}speedup_{side}{end}": "ratio" for w in ("", "wall_") for side in "ab"
                    for end in ("", "_low", "_high")},
                 **{f"flops_ratio_{c}": "ratio" for c in CONVENTIONS}}


def display_frame(df: pd.DataFrame, *, score_cols: Iterable[str] = ()) -> pd.DataFrame:
    """Numbers as short strings for people: FLOPs in 3 significant digits, scores in 4 decimals."""
    shown = df.copy().astype(object)
    kinds = dict(DISPLAY_KINDS, **{c: "score" for c in score_cols})
    for col in shown.columns:
        kind = kinds.get(col)
        if kind == "ratio":
            shown[col] = shown[col].map(lambda v: "–" if v is None or v != v else f"{v:.2f}x")
        elif kind:
            shown[col] = shown[col].map(lambda v, k=kind: _fmt_num(v, k))
    return shown


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain Python values (NaN -> None), so json.dumps writes exact, valid JSON."""
    out = []
    for rec in df.to_dict("records"):
        out.append({k: (None if isinstance(v, float) and math.isnan(v) else
                        v.item() if hasattr(v, "item") else v) for k, v in rec.items()})
    return out


def _table(shown: pd.DataFrame, fmt: str) -> str:
    if fmt == "html":
        return shown.to_html(index=False, escape=True, border=0, classes="table")
    if fmt == "latex":
        return shown.to_latex(index=False, escape=True)
    from tabulate import tabulate

    return tabulate(shown.values.tolist(), headers=list(shown.columns), tablefmt="github" if fmt == "md" else fmt,
                    disable_numparse=True)


def render(df: pd.DataFrame, fmt: str = "md") -> str:
    """The comparison table: csv and json keep full precision (they round-trip); md/html/latex are for people."""
    df = df[COLUMNS] if set(COLUMNS) <= set(df.columns) else df
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "json":
        return json.dumps(_records(df), indent=2)
    return _table(display_frame(df), fmt)


def render_leaderboard(board: pd.DataFrame, fmt: str = "md", tasks: Iterable[str] = ()) -> str:
    return _table(display_frame(board, score_cols=tasks), fmt)


def claims_frame(claims: list[PairClaim]) -> pd.DataFrame:
    return pd.DataFrame([c.record() for c in claims])


def leaderboard_caption(board: pd.DataFrame) -> str:
    col = next((c for c in ("glue_avg", "avg_score", "score") if c in board.columns), "score")
    what = {"glue_avg": "the GLUE score as the ELECTRA paper computes it (mean over tasks of the median dev "
                        "score: Matthews for CoLA, Spearman for STS-B, accuracy for the rest; WNLI left out)",
            "avg_score": "the mean over tasks of each task's median dev score",
            "score": "the median dev score over fine-tuning seeds"}[col]
    return (f"Ranked by {what} at the full pretraining budget; params = encoder parameters; "
            f"seeds = fine-tuning seeds per task.")


def render_report(report: Report, fmt: str = "md", *, images: list[Any] | None = None) -> str:
    """The report in one format: md/latex (tables and sentences), csv/json (the comparison rows), html."""
    if fmt in ("csv", "json"):
        return render(report.comparison, fmt)
    if fmt == "html":
        from bench.results.html_report import render_html

        return render_html(report, images or [])
    tasks = sorted(report.comparison["task"].unique()) if not report.comparison.empty else []
    lines = report.lines or ["No pair of models to compare (a claim needs two models, or a model and the "
                             "control, on the same task and size)."]
    if report.comparison.empty:
        lines = ["No finished fine-tuning runs match: run `bench run` first, or loosen the filters."]
    if fmt == "latex":
        items = "\n".join(f"  \\item {_latex_escape(s)}" for s in lines)
        return "\n".join([
            "% electra-bench report: comparison table, leaderboard, claims", render(report.comparison, "latex"),
            f"% {leaderboard_caption(report.leaderboard)}", render_leaderboard(report.leaderboard, "latex", tasks),
            "\\begin{itemize}", items, "\\end{itemize}", ""])
    parts = [render(report.comparison, fmt), "", "## Leaderboard", "", leaderboard_caption(report.leaderboard), "",
             render_leaderboard(report.leaderboard, fmt, tasks), "", "## Claims at matched compute", ""]
    parts += [f"- {s}" for s in lines]
    failed = [r for r in report.runs if r["status"] == "failed"]
    if failed:
        parts += ["", "## Runs without a result", ""]
        parts += [f"- {r['kind']} {r['model']} ({r['size']}{', ' + r['task'] if r['task'] else ''}"
                  f"{'' if r['seed'] is None else ', seed ' + str(r['seed'])}), run {r['id']}, attempt "
                  f"{r['attempts']}: {short_error(r['error'])}" for r in failed]
    return "\n".join(parts) + "\n"


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}"}


def _latex_escape(s: str) -> str:
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in s)  # one pass, so escapes are not escaped again
