"""Suites: named experiments shipped as TOML files, each beside the published numbers it reproduces.

A suite file is an experiment file (the tables of `bench.toml`: [run], [models.X], [pretrain],
...) plus one `[suite]` table that says what it reproduces:

    [suite]
    description = "ELECTRA's stepping stones to BERT at matched compute"
    reproduces = "Clark et al. 2020 (ELECTRA), Table 5"
    metric = "GLUE dev score"          # what the paper's numbers are
    paper_size = "base"                # the size and compute the paper measured them at
    paper_flops = "6.4e19"
    ordering = ["electra > all-tokens-mlm", ...]    # the pairs the paper orders (closed transitively)
    [suite.paper]                      # published number per model (a row without one shows "-")
    electra = 85.0
    [suite.paper_curve.electra]        # optional: published numbers at shares of the budget (--curve)
    "0.0625" = 74.1

`bench run --suite NAME` layers the suite over ./bench.toml (your data and executor settings
stay), and flags override both. Built-in suites live in `bench/suites/`; a path to a file of
your own works the same way.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import ConfigError

SUITES_DIR = Path(__file__).parent / "suites"
SUITE_KEYS = ("description", "reproduces", "metric", "paper_size", "paper_flops", "ordering", "note", "paper",
              "paper_curve")


@dataclass(frozen=True)
class Suite:
    """What a suite reproduces, and the paper's numbers for its rows."""

    name: str
    path: Path
    description: str
    reproduces: str
    metric: str = "GLUE dev score"
    paper_size: str = ""
    paper_flops: str = ""
    ordering: tuple[tuple[str, str], ...] = ()  # (better, worse) pairs the paper claims, closed transitively
    note: str = ""
    claims: tuple[str, ...] = ()  # the ordering as written in the file ("electra > bert")
    paper: dict[str, float] = field(default_factory=dict)  # model -> published score (percent, as printed)
    paper_curve: dict[str, dict[float, float]] = field(default_factory=dict)  # model -> share of budget -> score

    @property
    def setting(self) -> str:
        """'base, 6.4e19 FLOPs': where the paper measured its numbers."""
        return ", ".join(x for x in (self.paper_size, f"{self.paper_flops} FLOPs" if self.paper_flops else "") if x)


def available_suites() -> list[str]:
    """Names of the built-in suites (files in bench/suites/)."""
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


def suite_path(name: str) -> Path:
    """A built-in suite's file, or `name` itself when it is a path to a TOML file."""
    builtin = SUITES_DIR / f"{name}.toml"
    if builtin.is_file():
        return builtin
    given = Path(name).expanduser()
    if given.suffix == ".toml" and given.is_file():
        return given
    known = available_suites()
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown suite {name!r}.{hint} Known suites: {', '.join(known)} (see `bench list`), or give "
                      f"a path to a suite file (*.toml).")


def read_suite(name: str) -> tuple[Suite, dict[str, Any], str]:
    """(the suite, its experiment tables without [suite], the file's text) for a name or path."""
    path = suite_path(name)
    text = path.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: malformed TOML: {exc}. Fix the syntax there.") from None
    table = raw.pop("suite", None)
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: a suite file needs a [suite] table (description, reproduces, paper numbers); "
                          f"without one it is a plain experiment file: pass it with --config instead.")
    models = raw.get("run", {}).get("models", []) if isinstance(raw.get("run"), dict) else []
    return _suite(path, table, [str(m) for m in models]), raw, text


def load_suite(name: str) -> Suite:
    return read_suite(name)[0]


def _suite(path: Path, t: dict[str, Any], models: list[str]) -> Suite:
    unknown = [k for k in t if k not in SUITE_KEYS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], SUITE_KEYS, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{path}: unknown key suite.{unknown[0]}.{hint} Valid keys in [suite]: "
                          f"{', '.join(SUITE_KEYS)}.")
    for key in ("description", "reproduces"):
        if not isinstance(t.get(key), str) or not t[key]:
            raise ConfigError(f"{path}: [suite] needs `{key}` (a string).")

    def number(where: str, v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"{path}: {where} must be a number (the published score), got {v!r}.")
        return float(v)

    paper = {str(m): number(f"suite.paper.{m}", v) for m, v in dict(t.get("paper", {})).items()}
    curve: dict[str, dict[float, float]] = {}
    for model, points in dict(t.get("paper_curve", {})).items():
        if not isinstance(points, dict):
            raise ConfigError(f"{path}: [suite.paper_curve.{model}] must map shares of the budget to scores.")
        try:
            curve[str(model)] = {float(k): number(f"suite.paper_curve.{model}.{k}", v) for k, v in points.items()}
        except ValueError:
            raise ConfigError(f"{path}: [suite.paper_curve.{model}] keys are shares of the budget, "
                              f"e.g. \"0.0625\" = 74.1.") from None
    ordering = t.get("ordering", [])
    if not isinstance(ordering, list) or not all(isinstance(m, str) and m.count(">") == 1 for m in ordering):
        raise ConfigError(f"{path}: suite.ordering must be a list of \"better > worse\" strings, e.g. "
                          f"[\"electra > bert\"].")
    pairs = [tuple(x.strip() for x in item.split(">")) for item in ordering]
    named = {m for pair in pairs for m in pair} | set(paper) | set(curve)
    stray = sorted(named - set(models)) if models else []
    if stray:
        raise ConfigError(f"{path}: [suite] names {', '.join(repr(m) for m in stray)}, not among run.models "
                          f"({', '.join(models)}); a paper number or ordering is for one of the suite's models.")
    return Suite(name=path.stem, path=path, description=t["description"], reproduces=t["reproduces"],
                 metric=str(t.get("metric", "GLUE dev score")), paper_size=str(t.get("paper_size", "")),
                 paper_flops=str(t.get("paper_flops", "")), ordering=transitive(pairs),
                 claims=tuple(" > ".join(p) for p in pairs), note=str(t.get("note", "")),
                 paper=paper, paper_curve=curve)


def transitive(pairs: list[tuple[str, ...]]) -> tuple[tuple[str, str], ...]:
    """Every (better, worse) pair the claimed pairs imply: a > b and b > c give a > c too."""
    closed = {(a, b) for a, b in pairs}
    while True:
        more = {(a, d) for a, b in closed for c, d in closed if b == c and a != d} - closed
        if not more:
            break
        closed |= more
    order = [m for pair in pairs for m in pair]
    return tuple(sorted(closed, key=lambda p: (order.index(p[0]), order.index(p[1]))))
