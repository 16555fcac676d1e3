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
    paper_tasks = 8                    # optional: how many tasks the paper's score averages
    [suite.reference_flops]            # optional: the paper's total for a reference run, as its table gives it
    electra-small = 1.4e18             # so "electra-small@6.25%" is 6.25% of 1.4e18 in this suite

    [size.tiny]                        # optional, per size preset: settings for when the run is at that size
    budget = 8e12
    max_train_examples = 5000

`bench run --suite NAME` layers the suite over ./bench.toml (your data and executor settings
stay), and flags override both. A `[size.<preset>]` table applies when the run's size (--size,
[run] size, else the machine's default: tiny without a GPU) is that preset, over the suite's
other tables, so a suite sized for a time target never changes the preset's defaults for other
jobs; explicit flags still win over it. Its keys: SIZE_KEYS. Built-in suites live in
`bench/suites/`; a path to a file of your own works the same way.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from bench.toml_compat import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import ConfigError

SUITES_DIR = Path(__file__).parent / "suites"
SUITE_KEYS = ("description", "reproduces", "metric", "paper_size", "paper_flops", "ordering", "note", "paper",
              "paper_curve", "paper_tasks", "reference_flops")
# [size.<preset>] keys -> (the table of the experiment file, its key there) they set at that size
SIZE_KEYS: dict[str, tuple[str, str]] = {
    "budget": ("run", "budget"),  # pretraining budget: FLOPs, "electra-small@6.25%" or "20min"
    "seeds": ("run", "seeds"),  # fine-tuning seeds
    "epochs": ("finetune", "epochs"),  # fine-tuning epochs (every task)
    "max_train_examples": ("finetune", "max_train_examples"),  # fine-tuning cap on training examples (0 = all)
}
SHARE = re.compile(r"([a-z]+-[a-z]+)@([\d.]+)%")  # a share of a paper run, as bench.train.budget reads it


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
    paper_tasks: int = 0  # how many tasks the paper's score averages (0 = not stated)
    reference_flops: dict[str, float] = field(default_factory=dict)  # reference run -> the paper's total FLOPs
    sizes: dict[str, dict[str, Any]] = field(default_factory=dict)  # size preset -> SIZE_KEYS settings at that size

    @property
    def setting(self) -> str:
        """'base, 6.4e19 FLOPs': where the paper measured its numbers."""
        return ", ".join(x for x in (self.paper_size, f"{self.paper_flops} FLOPs" if self.paper_flops else "") if x)

    @property
    def paper_tasks_label(self) -> str:
        """'8 GLUE tasks': what the paper's score averages ('' when the suite does not say)."""
        if not self.paper_tasks:
            return ""
        glue = "GLUE " if "glue" in self.metric.lower() else ""
        return f"{self.paper_tasks} {glue}task{'s' * (self.paper_tasks != 1)}"

    def size_tables(self, size: str) -> dict[str, dict[str, Any]]:
        """The suite's [size.<size>] settings as experiment-file tables ({"run": {...}, "finetune": {...}})."""
        out: dict[str, dict[str, Any]] = {}
        for key, value in self.sizes.get(size, {}).items():
            table, name = SIZE_KEYS[key]
            out.setdefault(table, {})[name] = value
        return out

    def resolve_share(self, budget: Any, convention: str = "paper") -> Any:
        """A budget named as a share of a reference run this suite gives the paper's total for
        ("electra-small@6.25%"), in FLOPs of that total; any other budget as it is.

        The paper's totals are in the paper's own count, so they apply under the paper convention;
        under the executed convention a share resolves as everywhere else (bench.train.budget).
        """
        if convention != "paper" or not isinstance(budget, str):
            return budget
        m = SHARE.fullmatch(budget.strip().lower())
        if not m or m.group(1) not in self.reference_flops:
            return budget
        try:
            pct = float(m.group(2))
        except ValueError:
            return budget
        if not 0 < pct <= 1000:
            return budget  # bench.train.budget names the range
        return self.reference_flops[m.group(1)] * pct / 100


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
    sizes = _sizes(path, text, raw.pop("size", {}))
    models = raw.get("run", {}).get("models", []) if isinstance(raw.get("run"), dict) else []
    suite = _suite(path, table, [str(m) for m in models])
    return dataclasses.replace(suite, sizes=sizes), raw, text


def load_suite(name: str) -> Suite:
    return read_suite(name)[0]


def _sizes(path: Path, text: str, tables: Any) -> dict[str, dict[str, Any]]:
    """The [size.<preset>] tables, checked: known presets, known keys, values of the right type and range."""
    from bench.config import _coerce, _field_type, _line, _unknown_key_msg, check_range, Experiment, FinetuneSettings
    from models.sizes import SIZES

    if not isinstance(tables, dict) or not all(isinstance(v, dict) for v in tables.values()):
        raise ConfigError(f"{path}{_line(text, None, 'size')}: `size` holds one table per size preset, e.g. "
                          f"[size.tiny] with {', '.join(SIZE_KEYS)}.")
    out: dict[str, dict[str, Any]] = {}
    for preset, values in tables.items():
        section = f"size.{preset}"
        if preset not in SIZES:
            close = difflib.get_close_matches(preset, list(SIZES), n=1, cutoff=0.5)
            hint = f" Did you mean [size.{close[0]}]?" if close else ""
            raise ConfigError(f"{path}{_line(text, None, section)}: [{section}] names no size preset.{hint} "
                              f"Size presets: {', '.join(SIZES)}.")
        checked: dict[str, Any] = {}
        for key, value in values.items():
            if key not in SIZE_KEYS:
                raise ConfigError(_unknown_key_msg(key, list(SIZE_KEYS), str(path), text, section=section))
            where = f"{path}{_line(text, section, key)}"
            table, name = SIZE_KEYS[key]
            cls = Experiment if table == "run" else FinetuneSettings
            value = _coerce(value, _field_type(cls, name), f"{section}.{key}", where)
            if key == "budget":
                if not _plain_share(value):  # a well-formed share is counted when the run is planned
                    from bench.train.budget import parse_budget

                    parse_budget(value, where=f"{where}: {section}.{key}")
            else:
                check_range(table, name, value, where)
            checked[key] = value
        out[preset] = checked
    return out


def _plain_share(value: Any) -> bool:
    """A share of a known reference run with a percentage in range ("electra-small@6.25%")."""
    from bench.train.budget import REFERENCE_RUNS

    m = SHARE.fullmatch(value.strip().lower()) if isinstance(value, str) else None
    try:
        return bool(m) and m.group(1) in REFERENCE_RUNS and 0 < float(m.group(2)) <= 1000
    except ValueError:
        return False


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
    paper_tasks = t.get("paper_tasks", 0)
    if isinstance(paper_tasks, bool) or not isinstance(paper_tasks, int) or paper_tasks < 0:
        raise ConfigError(f"{path}: suite.paper_tasks must be the number of tasks the paper's score averages "
                          f"(an integer, e.g. 8 for the GLUE score without WNLI), got {paper_tasks!r}.")
    from bench.train.budget import REFERENCE_RUNS

    reference = t.get("reference_flops", {})
    if not isinstance(reference, dict):
        raise ConfigError(f"{path}: [suite.reference_flops] must map reference runs to the paper's total FLOPs, "
                          f"e.g. electra-small = 1.4e18.")
    for run in reference:
        if run not in REFERENCE_RUNS:
            close = difflib.get_close_matches(run, list(REFERENCE_RUNS), n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{path}: unknown key suite.reference_flops.{run}.{hint} Reference runs: "
                              f"{', '.join(REFERENCE_RUNS)}.")
    totals: dict[str, float] = {}
    for run, v in reference.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
            raise ConfigError(f"{path}: suite.reference_flops.{run} must be a positive number of FLOPs (the paper's "
                              f"total for that run), e.g. 1.4e18; got {v!r}.")
        totals[str(run)] = float(v)
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
                 paper=paper, paper_curve=curve, paper_tasks=paper_tasks, reference_flops=totals)


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
