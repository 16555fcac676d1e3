"""Output formats of `bench report`, one module each; a new format is one more module named here.

This package's own import is light (no pandas, no matplotlib): `bench report` imports only the
module of the format it writes, when it writes it. Each text format's module has
`render_report(report, *, images=None) -> str`; a binary one (parquet) has
`write_store(store, path, *, run_ids=None)`. The formats in PAPER_COLUMN also take `paper`: a suite's
published number per model (`bench report --suite`), written as a `paper` column beside each model's rows.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from bench.errors import ConfigError

if TYPE_CHECKING:
    from bench.results.plots import PlotImage
    from bench.results.report import Report
    from bench.results.store import Store

FORMATS = ("md", "html", "csv", "latex", "json", "parquet")
BINARY = frozenset({"parquet"})  # written to a file only, never printed
NEEDS_IMAGES = frozenset({"html"})  # embed the plots (plots.report_plots)
PAPER_COLUMN = frozenset({"csv", "json", "parquet"})  # a `paper` column with a suite's numbers (md: its section)
MODULES = {"md": "markdown", "html": "html", "csv": "csv_format", "latex": "latex", "json": "json_format",
           "parquet": "parquet"}


def module_of(fmt: str) -> ModuleType:
    """The module of format `fmt`, imported now (and only now)."""
    if fmt not in MODULES:
        raise ConfigError(f"unknown report format {fmt!r}: use one of {', '.join(FORMATS)}.")
    return importlib.import_module(f"bench.results.formats.{MODULES[fmt]}")


def _images(report: Report, fmt: str, images: list[PlotImage] | None) -> list[PlotImage] | None:
    """None for a format that embeds plots means: draw them now (an empty list means: none)."""
    if images is None and fmt in NEEDS_IMAGES:
        from bench.results.plots import report_plots

        return report_plots(report)
    return images


def _paper(fmt: str, paper: dict[str, float] | None) -> dict[str, dict[str, float]]:
    """The `paper=` keyword for a format that writes the paper column, when a suite gives one."""
    return {"paper": paper} if paper is not None and fmt in PAPER_COLUMN else {}


def render(report: Report, fmt: str, *, images: list[PlotImage] | None = None,
           paper: dict[str, float] | None = None) -> str:
    """The report as text in a text format (md, html, csv, latex, json); `paper`: a suite's number per model."""
    if fmt in BINARY:
        raise ConfigError(f"the {fmt} format is a binary file, not text: write it with --out FILE "
                          f"(bench.results.formats.write).")
    return module_of(fmt).render_report(report, images=_images(report, fmt, images), **_paper(fmt, paper))


def write(report: Report, fmt: str, path: str | Path, *, images: list[PlotImage] | None = None,
          store: Store | None = None, paper: dict[str, float] | None = None) -> Path:
    """Write the report to `path` in any format; parquet writes the long table of `store`'s runs.
    `paper`: a suite's published number per model, a column of the formats in PAPER_COLUMN."""
    path = Path(path)
    module = module_of(fmt)
    if fmt in BINARY and store is None:
        raise ConfigError(f"the {fmt} format writes the store's runs: pass store= (the Store the report was read from).")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt in BINARY:
        module.write_store(store, path, run_ids=_report_run_ids(report), **_paper(fmt, paper))
        return path
    text = module.render_report(report, images=_images(report, fmt, images), **_paper(fmt, paper))
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    return path


def _report_run_ids(report: Report) -> list[str] | None:
    """The runs a filtered report shows; None (every run of the store) when no filter is set."""
    if not any(report.filters.values()):
        return None
    return [r["id"] for r in report.runs]
