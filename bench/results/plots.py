"""Report figures with matplotlib (Agg, no display): score vs pretraining FLOPs, loss vs FLOPs, final scores.

Each figure is rendered once to PNG and SVG bytes: the HTML report embeds them, `--plots DIR`
writes them as files. Figures are built on `matplotlib.figure.Figure` directly, never through
pyplot, so no global state or GUI backend is involved.
"""

from __future__ import annotations

import io
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from bench.results.report import Report

PANEL_W, PANEL_H = 5.2, 3.8  # inches per subplot
DPI = 110
CONTROL_COLOR = "0.45"
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
# pretraining loss panels: (title, y label, {series name: line label suffix})
LOSS_PANELS = (
    ("Masked-LM loss (BERT MLM, ELECTRA generator)", "cross-entropy (nats per masked token)",
     {"mlm_loss": "", "gen_loss": " generator"}),
    ("Replaced-token detection loss (ELECTRA discriminator)", "binary cross-entropy (nats per token)",
     {"disc_loss": " discriminator"}),
)


@dataclass(frozen=True)
class PlotImage:
    """One figure, rendered."""

    name: str  # file stem: score_vs_flops, pretrain_loss, final_scores
    title: str
    caption: str
    png: bytes
    svg: bytes


def model_colors(models: list[str], control: str | None) -> dict[str, str]:
    """A stable colour per model across every figure; the control in grey."""
    out, i = {}, 0
    for m in sorted(set(models)):
        if m == control:
            out[m] = CONTROL_COLOR
        else:
            out[m] = PALETTE[i % len(PALETTE)]
            i += 1
    return out


def _new_figure(**kwargs: Any) -> Figure:
    """matplotlib is imported here, at the first figure, so the formats without plots never load it."""
    import matplotlib

    matplotlib.use("Agg")  # headless everywhere: CI, servers, the GPU box
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _grid(n: int) -> tuple[Figure, list[Any]]:
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    width = PANEL_W * cols if n > 1 else PANEL_W * 1.35  # a lone panel gets room for its legend
    fig = _new_figure(figsize=(width, PANEL_H * rows), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _render(fig: Figure, name: str, title: str, caption: str) -> PlotImage:
    png, svg = io.BytesIO(), io.BytesIO()
    fig.savefig(png, format="png", dpi=DPI)
    fig.savefig(svg, format="svg")
    return PlotImage(name, title, caption, png.getvalue(), svg.getvalue())


def _score_label(task: str, labels: dict[str, str]) -> str:
    metric = labels.get(task, "score").replace("_", " ")
    return f"{task} dev {metric} (median over seeds)"


def _few_log_ticks(ax: Any, flops: Any) -> None:
    """A log axis over less than a decade (one budget, no curve: the models' FLOPs differ by a step's worth)
    labels its minor ticks, and they collide (8.007x10^12, 8.008x10^12, ...). Widen it to a few decades around the
    points and label only 1-2-5 ticks, plainly."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if len(flops) == 0:
        return
    lo, hi = float(min(flops)), float(max(flops))
    if lo <= 0 or hi / lo >= 10:
        return
    ax.set_xlim(lo / 3, hi * 3)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.0e}".replace("e+", "e")))
    ax.xaxis.set_minor_formatter(NullFormatter())


def score_vs_flops(comparison: pd.DataFrame, *, control: str | None, score_labels: dict[str, str],
                   convention: str = "paper") -> PlotImage | None:
    """The paper's compute-efficiency figure: median dev score vs pretraining FLOPs (log x), seed range as bars."""
    if comparison.empty:
        return None
    settings = sorted({(t, s) for t, s in zip(comparison["task"], comparison["size"])})
    colors = model_colors(list(comparison["model"]), control)
    fig, axes = _grid(len(settings))
    for ax, (task, size) in zip(axes, settings):
        g = comparison[(comparison["task"] == task) & (comparison["size"] == size)]
        several = g.loc[g["budget_flops"] > 0, "budget_flops"].nunique() > 1
        for (model, budget), m in g.groupby(["model", "budget_flops"], sort=True):
            m = m.sort_values("pretrain_flops")
            label = f"{model} (budget {budget:.2g})" if several and budget else model
            pts = m[m["pretrain_flops"] > 0]
            if pts.empty:  # no pretraining compute: a horizontal reference, since log x has no 0
                med = float(m["score_median"].iloc[-1])
                ax.axhline(med, color=colors[model], linestyle="--", linewidth=1.5,
                           label=f"{label} (no pretraining)" if model == control else f"{label} (0 FLOPs)")
                ax.axhspan(float(m["score_min"].iloc[-1]), float(m["score_max"].iloc[-1]), color=colors[model],
                           alpha=0.12, linewidth=0)
                continue
            y = pts["score_median"].to_numpy(float)
            err = [y - pts["score_min"].to_numpy(float), pts["score_max"].to_numpy(float) - y]
            ax.errorbar(pts["pretrain_flops"], y, yerr=err, color=colors[model], marker="o", markersize=5,
                        linewidth=1.8, capsize=3, label=label)
        ax.set_xscale("log")
        _few_log_ticks(ax, g.loc[g["pretrain_flops"] > 0, "pretrain_flops"].to_numpy(float))
        ax.set_xlabel(f"pretraining FLOPs ({convention} convention, log scale)")
        ax.set_ylabel(_score_label(task, score_labels))
        ax.set_title(f"{task} ({size})")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    caption = ("Median dev score over fine-tuning seeds at each pretraining checkpoint (1/16 to 1 of the budget); "
               "bars span the seed range; dashed lines are models without pretraining FLOPs (the control).")
    return _render(fig, "score_vs_flops", "Score vs pretraining compute", caption)


def pretrain_loss(losses: pd.DataFrame, *, control: str | None = None) -> PlotImage | None:
    """Pretraining loss vs FLOPs (log x): MLM losses together, the discriminator's on its own panel."""
    if losses.empty:
        return None
    colors = model_colors(list(losses["model"]), control)
    panels = [p for p in LOSS_PANELS if losses["name"].isin(list(p[2])).any()]
    covered = {n for p in LOSS_PANELS for n in p[2]}
    rest = losses[(losses["name"] == "loss") & ~losses["pretrain_id"].isin(
        losses.loc[losses["name"].isin(list(covered)), "pretrain_id"])]
    if not rest.empty:  # a backend with only a total loss still gets a line
        panels.append(("Training loss", "loss (nats)", {"loss": ""}))
    if not panels:
        return None
    several = losses[["size", "budget_flops"]].drop_duplicates().shape[0] > 1
    fig, axes = _grid(len(panels))
    for ax, (title, ylabel, names) in zip(axes, panels):
        for (pid, model, size, budget), g in losses.groupby(["pretrain_id", "model", "size", "budget_flops"],
                                                             sort=True):
            for name, suffix in names.items():
                s = g[(g["name"] == name) & (g["flops"] > 0)].sort_values("flops")
                if name == "loss" and pid not in set(rest["pretrain_id"]):
                    continue
                if s.empty:
                    continue
                label = model + suffix + (f" ({size}, {budget:.2g})" if several else "")
                ax.plot(s["flops"], s["value"], color=colors[model], linewidth=1.6, label=label)
            base = g[g["name"] == "disc_base_entropy"].sort_values("flops")
            if "disc_loss" in names and not base.empty:  # what a detector that learned nothing would score
                ax.plot(base["flops"], base["value"], color=colors[model], linestyle=":", linewidth=1.2,
                        label=f"{model}: base rate (learned nothing)")
        ax.set_xscale("log")
        ax.set_xlabel("pretraining FLOPs (log scale)")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    caption = ("Training losses logged during pretraining, against the FLOPs spent so far. The dotted line is the "
               "binary entropy of the replaced-token fraction: a discriminator at that level has learned nothing.")
    return _render(fig, "pretrain_loss", "Pretraining loss vs compute", caption)


def final_scores(seeds: pd.DataFrame, *, control: str | None, score_labels: dict[str, str]) -> PlotImage | None:
    """Every seed's dev score at the full budget, per model, with the median marked."""
    if seeds.empty:
        return None
    keys = ["model", "size", "task", "budget_flops"]
    top = seeds["pretrain_flops"] == seeds.groupby(keys)["pretrain_flops"].transform("max")
    full = seeds[top]
    settings = sorted({(t, s) for t, s in zip(full["task"], full["size"])})
    colors = model_colors(list(full["model"]), control)
    fig, axes = _grid(len(settings))
    for ax, (task, size) in zip(axes, settings):
        g = full[(full["task"] == task) & (full["size"] == size)]
        groups = sorted(g.groupby(["model", "budget_flops"]), key=lambda kv: kv[1]["score"].median(), reverse=True)
        names = []
        for x, ((model, budget), m) in enumerate(groups):
            ys = m["score"].to_numpy(float)
            jitter = [(i - (len(ys) - 1) / 2) * 0.06 for i in range(len(ys))]  # seeds side by side, not stacked
            ax.scatter([x + j for j in jitter], ys, color=colors[model], s=28, alpha=0.8, zorder=3)
            med = statistics.median(ys.tolist())
            ax.hlines(med, x - 0.25, x + 0.25, color=colors[model], linewidth=2.5, zorder=4)
            ax.vlines(x, ys.min(), ys.max(), color=colors[model], linewidth=1, alpha=0.6)
            names.append(f"{model}\n({len(ys)} seeds)")
        ax.set_xticks(range(len(names)), names, fontsize=8)
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.set_ylabel(_score_label(task, score_labels).replace(" (median over seeds)", ""))
        ax.set_title(f"{task} ({size}): full budget")
        ax.grid(True, axis="y", alpha=0.3)
    caption = "Each dot is one fine-tuning seed at the full pretraining budget; the bar marks the median."
    return _render(fig, "final_scores", "Final scores and seed spread", caption)


def report_plots(report: Report) -> list[PlotImage]:
    """Every figure the report has data for."""
    made = [
        score_vs_flops(report.comparison, control=report.control, score_labels=report.score_labels,
                       convention=report.convention),
        pretrain_loss(report.losses, control=report.control),
        final_scores(report.seeds, control=report.control, score_labels=report.score_labels),
    ]
    return [p for p in made if p is not None]


def write_plots(images: list[PlotImage], folder: str | Path) -> list[Path]:
    """<folder>/<name>.png and .svg for each figure."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for img in images:
        for ext, data in (("png", img.png), ("svg", img.svg)):
            path = folder / f"{img.name}.{ext}"
            path.write_bytes(data)
            written.append(path)
    return written
