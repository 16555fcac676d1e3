"""Tables from the store alone: one row per model, size, task and pretraining-FLOPs point."""

from __future__ import annotations

import statistics
from typing import Iterable

import pandas as pd

from bench.store import Store

COLUMNS = ["model", "size", "task", "budget_flops", "pretrain_steps", "pretrain_flops", "pretrain_wall_s",
           "tokens_per_s", "finetune_wall_s", "score_median", "score_min", "score_max", "seeds"]


def pretrain_frame(store: Store) -> pd.DataFrame:
    rows = []
    for r in store.runs(kind="pretrain"):
        m = store.final_metrics(r["id"])
        conv = r["spec"].get("convention", "paper")
        points = {p.value: (p.step, p.flops) for p in store.series(r["id"], "checkpoint")}
        rows.append({
            "pretrain_id": r["id"], "model": r["model"], "size": r["size"], "budget_flops": r["budget"],
            "budget_text": r["spec"].get("budget", {}).get("text"), "convention": conv,
            "steps": m.get("steps", 0), "flops": m.get(f"flops_{conv}", 0.0),
            "flops_paper": m.get("flops_paper", 0.0), "flops_executed": m.get("flops_executed", 0.0),
            "wall_s": m.get("wall_s", 0.0), "tokens_per_s": m.get("tokens_per_s", 0.0),
            "points": points, "code_version": r["code_version"], "git_sha": r["git_sha"],
            "device": r["environment"].get("device"), "started_at": r["started_at"],
        })
    return pd.DataFrame(rows)


def finetune_frame(store: Store) -> pd.DataFrame:
    """One row per finished fine-tuning run (one seed)."""
    pre = {r["pretrain_id"]: r for r in pretrain_frame(store).to_dict("records")}
    rows = []
    for r in store.runs(kind="finetune"):
        m = store.final_metrics(r["id"])
        parent = pre.get(r["parent_id"], {})
        frac = r["spec"].get("fraction", 1.0)
        step, flops = (parent.get("points") or {}).get(frac, (None, None))
        if step is None:  # no checkpoint series (controls, external checkpoints): the run's totals
            step, flops = parent.get("steps", 0), parent.get("flops", 0.0)
        row = {"run_id": r["id"], "pretrain_id": r["parent_id"], "model": r["model"], "size": r["size"],
               "task": r["task"], "seed": r["seed"], "fraction": frac,
               "budget_flops": parent.get("budget_flops", 0.0), "pretrain_steps": step, "pretrain_flops": flops,
               "pretrain_wall_s": parent.get("wall_s", 0.0) * (frac if frac < 1 else 1.0),
               "tokens_per_s": parent.get("tokens_per_s", 0.0), "score": m.get("score"),
               "finetune_wall_s": m.get("train_wall_s", 0.0) + m.get("eval_wall_s", 0.0),
               "code_version": r["code_version"]}
        row.update({k: v for k, v in m.items() if k.startswith("metric_")})
        rows.append(row)
    return pd.DataFrame(rows)


def comparison_table(store: Store, *, pretrain_ids: Iterable[str] | None = None, tasks: Iterable[str] | None = None,
                     models: Iterable[str] | None = None, sizes: Iterable[str] | None = None,
                     budgets: Iterable[float] | None = None, fractions: Iterable[float] | None = None) -> pd.DataFrame:
    """The comparison: seeds aggregated to median, min and max of the headline score."""
    ft = finetune_frame(store)
    if ft.empty:
        return pd.DataFrame(columns=COLUMNS)
    for col, wanted in (("pretrain_id", pretrain_ids), ("task", tasks), ("model", models), ("size", sizes),
                        ("fraction", fractions)):
        if wanted is not None:
            ft = ft[ft[col].isin(list(wanted))]
    if budgets is not None:
        wanted = list(budgets)
        ft = ft[ft["budget_flops"].apply(lambda b: any(abs(b - w) <= 1e-6 * max(abs(w), 1) for w in wanted))]
    rows = []
    for _, g in ft.groupby(["pretrain_id", "task", "fraction"], sort=False):
        first = g.iloc[0]
        scores = [float(s) for s in g["score"]]
        rows.append({
            "model": first["model"], "size": first["size"], "task": first["task"],
            "budget_flops": first["budget_flops"], "pretrain_steps": int(first["pretrain_steps"]),
            "pretrain_flops": first["pretrain_flops"], "pretrain_wall_s": first["pretrain_wall_s"],
            "tokens_per_s": first["tokens_per_s"], "finetune_wall_s": statistics.median(g["finetune_wall_s"]),
            "score_median": statistics.median(scores), "score_min": min(scores), "score_max": max(scores),
            "seeds": len(scores),
        })
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df.sort_values(["task", "size", "model", "pretrain_flops"], kind="stable").reset_index(drop=True)


def render(df: pd.DataFrame, fmt: str = "md") -> str:
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "json":
        return df.to_json(orient="records", indent=2)
    from tabulate import tabulate

    shown = df.copy()
    for col in ("budget_flops", "pretrain_flops"):
        shown[col] = shown[col].map(lambda v: f"{v:.3g}")
    for col in ("pretrain_wall_s", "finetune_wall_s", "tokens_per_s"):
        shown[col] = shown[col].map(lambda v: f"{v:,.0f}" if v >= 100 else f"{v:.1f}")
    for col in ("score_median", "score_min", "score_max"):
        shown[col] = shown[col].map(lambda v: f"{v:.4f}")
    return tabulate(shown.values.tolist(), headers=list(shown.columns), tablefmt="github" if fmt == "md" else fmt,
                    disable_numparse=True)


def verdict_lines(df: pd.DataFrame, control: str | None) -> list[str]:
    """Plain sentences: does each model beat the no-pretraining control, and each other, beyond seed spread?"""
    lines = []
    full = df[df["pretrain_flops"] == df.groupby(["model", "task"])["pretrain_flops"].transform("max")]
    for task, g in full.groupby("task"):
        recs = g.to_dict("records")
        ctrl = next((r for r in recs if r["model"] == control), None)
        others = [r for r in recs if r["model"] != control]
        if ctrl is not None:
            for r in others:
                lines.append(f"{task}: {r['model']} vs no pretraining ({control}): " + _compare(r, ctrl))
        for i, a in enumerate(others):
            for b in others[i + 1:]:
                lines.append(f"{task}: {a['model']} vs {b['model']} at matched FLOPs: " + _compare(a, b))
        if ctrl is not None and others and all(_overlap(r, ctrl) for r in others):
            lines.append(f"{task}: no model beats the no-pretraining control beyond seed spread, so this budget "
                         f"({g['budget_flops'].max():.3g} FLOPs) is too small for pretraining to matter: the run "
                         f"checks the pipeline and is no evidence for or against either objective.")
    return lines


def _overlap(a: dict, b: dict) -> bool:
    return a["score_min"] <= b["score_max"] and b["score_min"] <= a["score_max"]


def _compare(a: dict, b: dict) -> str:
    gap = a["score_median"] - b["score_median"]
    if a["seeds"] < 2 or b["seeds"] < 2:
        return f"median gap {gap:+.4f} (one seed: no spread to judge by)."
    if _overlap(a, b):
        return f"median gap {gap:+.4f}, within the seed spread (ranges overlap): no measurable difference."
    return f"median gap {gap:+.4f}, outside the seed spread ({a['seeds']} and {b['seeds']} seeds)."
