"""CSV: the comparison rows at full precision (one per model, size, task and pretraining-FLOPs point)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench.results.formats.markdown import render

if TYPE_CHECKING:
    from bench.results.report import Report


def render_report(report: Report, *, images: list[Any] | None = None) -> str:
    """The comparison table as CSV; it round-trips (no rounding)."""
    return render(report.comparison_rows, "csv")
