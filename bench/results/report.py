"""The whole report, read from the store once: the Report every output format renders.

build_report assembles the comparison table and leaderboard (bench.results.tables), the claims
(bench.results.claims), the per-seed rows, the pretraining loss series and the provenance of
every run; the formats in bench.results.formats only present it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

import pandas as pd

from bench.results.claims import PairClaim, control_sentence, detect_control, pair_claims
from bench.results.store import Store
from bench.results.tables import comparison_from, filter_finetune, finetune_frame, leaderboard, pretrain_frame

LOSS_SERIES = ("loss", "mlm_loss", "gen_loss", "disc_loss", "disc_base_entropy")


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
    finals = store.all_final_metrics() if any(r["kind"] == "finetune" for r in runs) else {}
    for r in runs:
        if r["kind"] == "finetune" and r["status"] == "done":
            r["metrics"] = finals.get(r["id"], {})
    return runs

