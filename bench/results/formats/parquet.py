"""Parquet: the long table (tidy.long_table, one row per run: spec, environment, final metrics) for
pandas, polars and DuckDB, as benchopt writes its results. Needs pyarrow."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from bench.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from bench.results.store import Store


def _one_type(frame: pd.DataFrame) -> pd.DataFrame:
    """A column whose runs disagree on its type (a spec key a number in one run, text in another) becomes
    text, so pyarrow can store it; other columns keep their type."""
    frame = frame.copy()
    for col in frame.columns[frame.dtypes == object]:
        kinds = {type(v) for v in frame[col] if v is not None and v == v}
        if len(kinds) > 1:
            frame[col] = [None if v is None or v != v else str(v) for v in frame[col]]
    return frame


def write_store(store: Store, path: str | Path, *, run_ids: Iterable[str] | None = None,
                paper: dict[str, float] | None = None) -> Path:
    """Write the long table of `store` (only `run_ids`, if given) to `path` as Parquet; `paper` (a suite's
    published number per model) adds a `paper` column to each run of that model (missing for the others)."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ConfigError("the parquet format needs pyarrow: `pip install pyarrow` (or another format).") from None
    from bench.results.tidy import long_table

    frame = long_table(store, run_ids=run_ids)
    if paper is not None:
        frame["paper"] = [float(paper.get(m, math.nan)) for m in frame["model"]]
    _one_type(frame).to_parquet(path, index=False, engine="pyarrow")
    return Path(path)
