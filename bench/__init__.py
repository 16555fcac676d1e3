"""electra-bench: compare pretraining objectives at matched compute.

    import bench
    table = bench.run(["electra", "bert"], "sst2", size="tiny")   # the comparison, a DataFrame
    view = bench.report("results")                                 # .table, .leaderboard, .claims, .to_html()
    loaded = bench.load("results")                                 # .runs, .metrics (tidy)

run, report and load live in bench.api and are imported on first use, so `import bench`
imports neither torch nor pandas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "load", "report", "run"]

_API = ("run", "report", "load")

if TYPE_CHECKING:
    from bench.api import load, report, run


def __getattr__(name: str) -> Any:
    if name in _API:  # imported on first use: bench.api's callers pay for pandas and torch, `import bench` does not
        from bench import api

        return getattr(api, name)
    raise AttributeError(f"module 'bench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
