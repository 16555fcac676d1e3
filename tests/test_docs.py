"""The documentation stays true to the code (issue 25).

- Every results file in docs/results/ names its command, date, machine and commit, is included by the
  Results page, and quotes a preset, budget, number of fine-tuning examples and seeds that still exist.
- No page quotes a size preset that does not exist, or a tiny-preset budget or example count other than
  models/sizes.py's.
- Every `bench ...` command in the README, the changelog and the docs parses against the click CLI: an
  unknown command, an unknown flag or a bad value fails.
- The Python snippets of the API page marked `<!-- test -->` run, in order, on the micro project.
- The reference tables docs/hooks.py generates cover every column and setting the code has.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest

from conftest import MICRO, TOY_TASK_TOML, write_corpus, write_task

from bench.cli import main
from models.sizes import SIZES

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RESULTS = DOCS / "results"
API_PAGE = DOCS / "how-to" / "python-api.md"
HISTORY = {"CHANGELOG.md", "changelog.md"}  # the history: figures of earlier presets belong there


def pages() -> list[Path]:
    """Every markdown source: the README, the changelog and the docs (results files included)."""
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted(DOCS.rglob("*.md"))]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


# --- results files ---------------------------------------------------------------------------------

FIELD = re.compile(r"^- (command|date|machine|commit|preset|suite|budget|examples|seeds): (.+)$", re.M)
REQUIRED = ("command", "date", "machine", "commit")


def results_files() -> list[Path]:
    return sorted(p for p in RESULTS.glob("*.md") if p.name != "index.md")


def header(path: Path) -> dict[str, str]:
    """The `- key: value` lines at the top of a results file (before its first blank line after them)."""
    text = path.read_text(encoding="utf-8")
    fields: dict[str, str] = {}
    for m in FIELD.finditer(text.split("\n\n", 2)[1] if text.startswith("#") else text.split("\n\n", 1)[0]):
        fields[m.group(1)] = m.group(2).strip()
    return fields


def results_problems(path: Path) -> list[str]:
    """What is wrong with one results file: a missing field, a commit that is not one, a gone setting."""
    f = header(path)
    problems = [f"{rel(path)}: no `- {k}: ...` line at the top" for k in REQUIRED if k not in f]
    if problems:
        return problems
    if not re.match(r"`[^`]+`|`` .+ ``", f["command"]):
        problems.append(f"{rel(path)}: the command is not given as code: {f['command']!r}")
    pending = f["date"] == "pending"
    if not (re.fullmatch(r"[0-9a-f]{7,40}( \(.*\))?", f["commit"]) or (pending and f["commit"] == "pending")):
        problems.append(f"{rel(path)}: commit {f['commit']!r} is not a commit id")
    if not pending and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", f["date"]):
        problems.append(f"{rel(path)}: date {f['date']!r} is not YYYY-MM-DD")
    return problems + settings_problems(path, f)


def settings_problems(path: Path, f: dict[str, str]) -> list[str]:
    """The preset, suite, budget, fine-tuning examples and seeds a results file quotes must exist today."""
    if "preset" not in f:
        return []
    name = f["preset"]
    if name not in SIZES:
        return [f"{rel(path)}: preset {name!r} no longer exists (models/sizes.py has {sorted(SIZES)})"]
    preset = SIZES[name]
    budget, examples, seeds = preset.budget_flops, preset.finetune_max_train, preset.seeds
    where = f"the {name} preset"
    if "suite" in f:
        from bench.suite import available_suites, load_suite

        if f["suite"] not in available_suites():
            return [f"{rel(path)}: suite {f['suite']!r} no longer exists"]
        table = load_suite(f["suite"]).sizes.get(name, {})
        budget = table.get("budget", budget)
        examples = table.get("max_train_examples", examples)
        seeds = table.get("seeds", seeds)
        where = f"suite {f['suite']} at {name}"
    flag = re.search(r"--seeds[ =](\d+)", f["command"])
    if flag:
        seeds = int(flag.group(1))
    problems = []
    if "budget" in f and float(f["budget"]) != float(budget):
        problems.append(f"{rel(path)}: budget {f['budget']} is not {where}'s ({budget:g})")
    if "examples" in f and int(f["examples"].replace(",", "")) != int(examples):
        problems.append(f"{rel(path)}: {f['examples']} fine-tuning examples is not {where}'s ({examples})")
    if "seeds" in f and int(f["seeds"]) != int(seeds):
        problems.append(f"{rel(path)}: {f['seeds']} seeds is not {where}'s ({seeds})")
    return problems


def test_every_results_file_names_its_command_date_machine_and_commit():
    files = results_files()
    assert files, f"no results files in {RESULTS}"
    problems = [p for path in files for p in results_problems(path)]
    assert not problems, "\n".join(problems)


def test_the_results_page_includes_every_results_file():
    index = (RESULTS / "index.md").read_text(encoding="utf-8")
    included = set(re.findall(r'^--8<-- "docs/results/([^"]+)"$', index, re.M))
    assert included == {p.name for p in results_files()}


def test_a_results_file_without_its_command_or_with_a_gone_preset_is_caught(tmp_path):
    good = (RESULTS / "default-job.md").read_text(encoding="utf-8")
    no_command = tmp_path / "a.md"
    no_command.write_text(re.sub(r"^- command: .*\n", "", good, flags=re.M), encoding="utf-8")
    gone = tmp_path / "b.md"
    gone.write_text(good.replace("- budget: 1.5e13", "- budget: 8e12"), encoding="utf-8")
    old = tmp_path / "c.md"
    old.write_text(good.replace("- preset: tiny", "- preset: mini"), encoding="utf-8")
    for path, what in ((no_command, "command"), (gone, "budget"), (old, "no longer exists")):
        found = results_problems(path)
        assert any(what in p for p in found), (path.name, found)


def _readme_result():
    spec = importlib.util.spec_from_file_location("readme_result", ROOT / "benchmarks" / "readme_result.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readmes_result_is_the_default_jobs_recorded_output():
    rr = _readme_result()
    job = (RESULTS / "default-job.md").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert rr.readme_block(readme) == rr.block(job), "run python benchmarks/readme_result.py"
    # and a changed score in the recorded output would show: the block is built from it
    median = re.search(r"^\| electra .*?\| (0\.\d{4}) ", job, re.M).group(1)
    assert rr.block(job.replace(f" {median} ", " 0.1234 ", 1)) != rr.block(job)


NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?:e[+-]?\d+)?(?![\w])")


def _figures(text: str) -> list[str]:
    """Numbers worth checking: decimals, e-notation, and integers of 100 or more (commas dropped)."""
    out = []
    for m in NUMBER.finditer(text):
        n = m.group(0).rstrip(",").replace(",", "")
        if "." in n or "e" in n or int(n) >= 100:
            out.append(n)
    return out


def unquoted_figures(prose: str, sources: str) -> list[str]:
    """Figures in `prose` that no results file holds, exactly or rounded to the decimals quoted."""
    held = {float(n) for n in _figures(sources)}
    missing = []
    for n in _figures(prose):
        places = len(n.split(".")[1]) if "." in n and "e" not in n else None
        value = float(n)
        if value in held or (places is not None and any(round(h, places) == value for h in held)):
            continue
        missing.append(n)
    return missing


def test_the_results_pages_own_sentences_quote_only_recorded_figures():
    index = (RESULTS / "index.md").read_text(encoding="utf-8")
    prose = "\n".join(line for line in index.splitlines() if not line.startswith("--8<--"))
    sources = "\n".join(p.read_text(encoding="utf-8") for p in results_files())
    assert unquoted_figures(prose, sources) == [], "the Results page quotes figures no results file holds"
    # a figure typed by hand that no command printed is caught
    assert unquoted_figures(prose + " it took 0.8123 s", sources) == ["0.8123"]


# --- presets and budgets quoted anywhere ------------------------------------------------------------

PRESET_NAMES = [
    re.compile(r"--sizes?[ =]([\w,-]+)"),          # --size tiny, --sizes tiny,small
    re.compile(r"`([\w-]+)` preset"),               # the `tiny` preset
    re.compile(r"\[size\.([\w-]+)\]"),              # a suite's [size.tiny] table
]
TINY_CONTEXT = re.compile(r"`?tiny`? (?:preset|default)", re.I)
FLOPS = re.compile(r"(\d+(?:\.\d+)?e1\d)(?: paper)? FLOPs")
EXAMPLES = re.compile(r"(\d{1,3}(?:,\d{3})+|\d+) (?:fine-tuning )?examples")


def preset_problems(path: Path, text: str) -> list[str]:
    problems = []
    for pattern in PRESET_NAMES:
        for m in pattern.finditer(text):
            for name in m.group(1).split(","):
                if name and name not in SIZES and name not in ("<preset>",):
                    problems.append(f"{rel(path)}: size preset {name!r} ({m.group(0)!r}) does not exist "
                                    f"(models/sizes.py: {', '.join(SIZES)})")
    if path.name in HISTORY:
        return problems
    tiny = SIZES["tiny"]
    for block in re.split(r"\n\s*\n", text):  # a paragraph that speaks of the tiny preset's defaults
        if not TINY_CONTEXT.search(block):
            continue
        for m in FLOPS.finditer(block):
            if float(m.group(1)) != tiny.budget_flops:
                problems.append(f"{rel(path)}: quotes {m.group(0)!r} beside the tiny preset, whose budget is "
                                f"{tiny.budget_flops:g}")
        for m in EXAMPLES.finditer(block):
            if int(m.group(1).replace(",", "")) != tiny.finetune_max_train:
                problems.append(f"{rel(path)}: quotes {m.group(0)!r} beside the tiny preset, whose fine-tuning "
                                f"cap is {tiny.finetune_max_train:,}")
    return problems


def test_no_page_quotes_a_preset_or_tiny_setting_that_does_not_exist():
    problems = [p for path in pages() for p in preset_problems(path, path.read_text(encoding="utf-8"))]
    assert not problems, "\n".join(problems)


def test_a_gone_preset_or_tiny_budget_is_caught():
    page = DOCS / "getting-started.md"
    assert preset_problems(page, "Run `bench run --size mini` for a smoke test.")
    assert preset_problems(page, "The `tiny` preset (a budget of 8e12 FLOPs, 5,000 fine-tuning examples).")
    assert not preset_problems(page, f"The `tiny` preset (a budget of {SIZES['tiny'].budget_flops:g} FLOPs).")


# --- every bench command parses against the CLI ---------------------------------------------------

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)
SPAN = re.compile(r"`(bench [^`]+)`")
SHELL = {"", "bash", "sh", "shell", "console"}


def bench_commands(text: str) -> list[str]:
    """The `bench ...` command lines of a page: in shell code blocks (also after `-m bench`) and inline code."""
    found = []
    for m in FENCE.finditer(text):
        if m.group(1) not in SHELL:
            continue
        for line in m.group(2).replace("\\\n", " ").splitlines():
            found += _commands_in(line)
    prose = FENCE.sub("", text)
    for m in SPAN.finditer(prose):
        found += _commands_in(m.group(1))
    return found


def _commands_in(line: str) -> list[str]:
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError:
        return []
    out, segment = [], []
    for tok in tokens + ["&&"]:
        if tok in ("&&", "||", ";", "|"):
            if "bench" in segment:
                i = segment.index("bench")
                if i == 0 or segment[i - 1] == "-m":
                    out.append(shlex.join(segment[i:]))
            segment = []
        else:
            segment.append(tok)
    return out


def cli_problem(command: str) -> str | None:
    """None when `command` parses against the click CLI; else why not."""
    args = shlex.split(command)[1:]
    if "..." in args:  # an elided command ("bench run --executor local ...")
        args = args[:args.index("...")]
    if not args or args[0].startswith("-"):
        try:
            main.make_context("bench", list(args), resilient_parsing=False)
        except click.exceptions.Exit:
            pass
        except click.ClickException as exc:
            return exc.format_message()
        return None
    name, rest = args[0], args[1:]
    cmd = main.commands.get(name)
    if cmd is None:
        return f"no command {name!r} (bench has {', '.join(sorted(main.commands))})"
    try:
        cmd.make_context(f"bench {name}", list(rest), resilient_parsing=False)
    except click.exceptions.Exit:  # --help
        pass
    except click.BadParameter as exc:
        if "does not exist" in exc.format_message():  # an example's own paths (bench merge A B --into C)
            return None
        return exc.format_message()
    except click.ClickException as exc:
        return exc.format_message()
    return None


def test_every_bench_command_in_the_docs_parses():
    checked, problems = 0, []
    for path in pages():
        for command in bench_commands(path.read_text(encoding="utf-8")):
            checked += 1
            why = cli_problem(command)
            if why:
                problems.append(f"{rel(path)}: `{command}`: {why}")
    assert checked >= 40, f"only {checked} bench commands found: is the extraction broken?"
    assert not problems, "\n".join(problems)


def test_an_unknown_flag_or_command_in_a_docs_command_is_caught():
    page = "```bash\nbench run --models electra,bert --tsak sst2   # typo\n```\nor `bench rnu --models bert`."
    commands = bench_commands(page)
    assert commands == ["bench run --models electra,bert --tsak sst2", "bench rnu --models bert"]
    assert all(cli_problem(c) for c in commands)
    assert cli_problem("bench run --convention flops") and cli_problem("bench run --seeds 0")
    assert bench_commands("```bash\ntorchrun --nproc_per_node 8 -m bench run --task sst2 \\\n  --size small\n```") == [
        "bench run --task sst2 --size small"]
    assert cli_problem("bench run --models electra,bert --task sst2 --size small --budget 20min") is None


# --- the generated reference ------------------------------------------------------------------------


def hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generated_reference_covers_every_setting_and_column():
    h = hooks()
    from bench import config

    rows = h.config_rows()
    keys = {(r["table"], r["key"]) for r in rows}
    assert set(config.RANGES) <= keys  # every validated range has its row, with its rule
    assert all(r["allowed"] for r in rows if (r["table"], r["key"]) in config.RANGES)
    assert ("run", "pretrain_seeds") in keys and ("executor", "sbatch") in keys
    tiny_budget = next(r for r in rows if r["key"] == "budget")["default"]
    assert f"tiny {SIZES['tiny'].budget_flops:g}" in tiny_budget
    for name in ("columns", "leaderboard", "runs", "metrics", "schema", "sizes", "config"):
        assert h.generated(name).strip()
    with pytest.raises(h.DocsDriftError, match="do not describe"):
        h.columns_markdown(["model", "a_new_column"], h.COMPARISON, "tables.COLUMNS")
    page = "# x\n\n<!-- bench:columns -->\n"
    assert "`score_median`" in h.on_page_markdown(page, type("P", (), {"file": type("F", (), {"src_uri": "x.md"})})(),
                                                   None, None)


# --- the API page's snippets run ------------------------------------------------------------------


def api_snippets() -> list[str]:
    text = API_PAGE.read_text(encoding="utf-8")
    return re.findall(r"^<!-- test -->\n```python\n(.*?)^```", text, re.M | re.S)


def test_the_api_pages_snippets_run_on_the_micro_project(tmp_path):
    snippets = api_snippets()
    assert len(snippets) >= 3, f"no `<!-- test -->` python blocks on {API_PAGE}"
    write_corpus(tmp_path)
    write_task(tmp_path)
    (tmp_path / "bench.toml").write_text('[run]\nsize = "micro"\ndata = "."\n\n[data]\ncorpus = "synthetic"\n\n'
                                         + TOY_TASK_TOML, encoding="utf-8")
    # the page speaks of SST-2; the micro project's toy task stands in for it
    body = "\n".join(s.replace('"sst2"', '"toy"') for s in snippets)
    script = (f"from models import sizes\nsizes.SIZES['micro'] = sizes.SizePreset(**{MICRO!r})\n"
              f"{body}\nprint('SNIPPETS OK')\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TQDM_DISABLE": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-"], input=script, text=True, cwd=tmp_path, env=env,
                          capture_output=True, timeout=600)
    assert proc.returncode == 0 and "SNIPPETS OK" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "results" / "report.html").stat().st_size > 0
    assert (tmp_path / "results" / "runs.parquet").stat().st_size > 0
