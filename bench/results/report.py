"""The whole report, read from the store once: the Report every output format renders.

build_report assembles the comparison table and leaderboard (bench.results.tables), the claims
(bench.results.claims), the per-seed rows, the pretraining loss series and the provenance of
every run; the formats in bench.results.formats only present it. It computes with plain rows
(tables.Rows) and makes a DataFrame of a table only when one is asked for (Report.comparison and
the like), so the markdown report never imports pandas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any, Iterable

from bench.results.claims import PairClaim, control_sentence, detect_control, pair_claims
from bench.results.store import Store
from bench.results.tables import (Rows, comparison_rows, filter_finetune, finetune_rows, is_present, leaderboard_rows,
                                  pretrain_rows)

if TYPE_CHECKING:
    import pandas as pd

LOSS_SERIES = ("loss", "mlm_loss", "gen_loss", "disc_loss", "disc_base_entropy")


@dataclass
class Report:
    """Everything a report shows, read from the store once."""

    comparison_rows: Rows  # COLUMNS, per-seed scores in attrs
    leaderboard_rows: Rows
    claims: list[PairClaim]
    lines: list[str]  # claim sentences, then the control warning where it applies
    seeds_rows: Rows  # one row per fine-tuning run (seed) in the report
    losses_rows: Rows  # pretraining series: model, size, budget_flops, name, step, flops, wall_s, value
    runs: list[dict[str, Any]]  # provenance: every run in the report, done or failed
    control: str | None
    convention: str
    score_labels: dict[str, str]  # task -> name of its headline metric
    source: str = ""
    generated_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    filters: dict[str, Any] = field(default_factory=dict)

    # the same tables as DataFrames, made (and pandas imported) on first use
    @cached_property
    def comparison(self) -> pd.DataFrame:
        return self.comparison_rows.frame()

    @cached_property
    def leaderboard(self) -> pd.DataFrame:
        return self.leaderboard_rows.frame()

    @cached_property
    def seeds(self) -> pd.DataFrame:
        return self.seeds_rows.frame()

    @cached_property
    def losses(self) -> pd.DataFrame:
        return self.losses_rows.frame()


def build_report(store: Store, *, tasks: Iterable[str] | None = None, models: Iterable[str] | None = None,
                 sizes: Iterable[str] | None = None, budgets: Iterable[float] | None = None,
                 control: str | None = "auto") -> Report:
    """Read the store once and compute every table, claim and series the renderers need.

    `control="auto"` takes the store's no-pretraining model (e.g. scratch); None drops the control claims.
    """
    filters = {"task": list(tasks or []), "model": list(models or []), "size": list(sizes or []),
               "budget": list(budgets or [])}
    pre = pretrain_rows(store)
    if control == "auto":
        control = detect_control(pre)
    finals = store.all_final_metrics()
    ft = filter_finetune(finetune_rows(store, pre, finals), tasks=tasks, models=models, sizes=sizes, budgets=budgets)
    df = comparison_rows(ft)
    used = {r["pretrain_id"] for r in ft.records}
    used_pre = pre.with_records([r for r in pre.records if r["pretrain_id"] in used])
    claims = pair_claims(df, control)
    runs = _provenance(store, {r["run_id"] for r in ft.records}, {r["pretrain_id"] for r in used_pre.records},
                       finals, tasks=tasks, models=models, sizes=sizes)
    convs = sorted({r["convention"] for r in used_pre.records}) or ["paper"]
    return Report(
        comparison_rows=df, leaderboard_rows=leaderboard_rows(df, used_pre), claims=claims,
        lines=[c.sentence for c in claims] + control_sentence(claims, df, control),
        seeds_rows=ft, losses_rows=_losses(store, used_pre), runs=runs, control=control,
        convention="/".join(convs), score_labels=_score_labels(ft), source=str(store.path), filters=filters,
    )


def _losses(store: Store, pre: Rows) -> Rows:
    rows = []
    for r in pre.records:
        for name in LOSS_SERIES:
            for m in store.series(r["pretrain_id"], name):
                rows.append({"pretrain_id": r["pretrain_id"], "model": r["model"], "size": r["size"],
                             "budget_flops": r["budget_flops"], "name": name, "step": m.step, "flops": m.flops,
                             "wall_s": m.wall_s, "value": m.value})
    return Rows(rows, ["pretrain_id", "model", "size", "budget_flops", "name", "step", "flops", "wall_s", "value"])


def _score_labels(ft: Rows) -> dict[str, str]:
    """Each task's headline metric: the metric_<name> equal to `score` in every run (the first if several)."""
    by_task: dict[Any, list[dict[str, Any]]] = {}
    for r in ft.records:
        if is_present((r.get("task"),)):
            by_task.setdefault(r["task"], []).append(r)
    out = {}
    for task, g in sorted(by_task.items(), key=lambda kv: kv[0]):
        names = [c for c in ft.columns if c.startswith("metric_") and all(is_present((r.get(c),)) for r in g)
                 and all(_close(r[c], r.get("score")) for r in g)]
        out[str(task)] = names[0][len("metric_"):] if names else "score"
    return out


def _close(a: Any, b: Any) -> bool:
    return b is not None and math.isclose(a, b, rel_tol=0, abs_tol=1e-12)


def _provenance(store: Store, ft_ids: set[str], pt_ids: set[str], finals: dict[str, dict[str, float]], *,
                tasks: Iterable[str] | None, models: Iterable[str] | None,
                sizes: Iterable[str] | None) -> list[dict[str, Any]]:
    """Every run behind the report, plus failed runs matching the filters (so failures stay visible);
    `finals`: the store's all_final_metrics."""
    runs = [r for r in store.runs(status="done") if r["id"] in ft_ids or r["id"] in pt_ids]
    for r in store.runs(status="failed"):
        if ((not tasks or r["task"] in tasks or r["task"] is None) and (not models or r["model"] in models)
                and (not sizes or r["size"] in sizes)):
            runs.append(r)
    for r in runs:
        if r["kind"] == "finetune" and r["status"] == "done":
            r["metrics"] = finals.get(r["id"], {})
    return runs

