"""CSV: the comparison rows at full precision (one per model, size, task and pretraining-FLOPs point)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench.results.formats.markdown import render, with_paper

if TYPE_CHECKING:
    from bench.results.report import Report


def render_report(report: Report, *, images: list[Any] | None = None,
                  paper: dict[str, float] | None = None) -> str:
    """The comparison table as CSV; it round-trips (no rounding).
    `paper` (a suite's published number per model, `bench report --suite`) adds a `paper` column."""
    return render(with_paper(report.comparison_rows, paper), "csv")
