"""LaTeX: the comparison table, the leaderboard with its caption, and the claims as an itemize list."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench.results.formats.markdown import claim_lines, leaderboard_caption, render, render_leaderboard, report_tasks

if TYPE_CHECKING:
    from bench.results.report import Report

LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}"}


def _latex_escape(s: str) -> str:
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in s)  # one pass, so escapes are not escaped again


def render_report(report: Report, *, images: list[Any] | None = None) -> str:
    """A LaTeX fragment (tabulars and an itemize) to \\input into a paper; `images` are not shown."""
    tasks, lines = report_tasks(report), claim_lines(report)
    items = "\n".join(f"  \\item {_latex_escape(s)}" for s in lines)
    return "\n".join([
        "% electra-bench report: comparison table, leaderboard, claims", render(report.comparison, "latex"),
        f"% {leaderboard_caption(report.leaderboard)}", render_leaderboard(report.leaderboard, "latex", tasks),
        "\\begin{itemize}", items, "\\end{itemize}", ""])
