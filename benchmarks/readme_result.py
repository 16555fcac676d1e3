"""The README's "current result" block, rebuilt from docs/results/default-job.md.

    python benchmarks/readme_result.py          # rewrite the block between <!-- RESULT --> markers
    python benchmarks/readme_result.py --check  # exit 1 if the README's block differs (tests run this)

The README quotes the default job's table (some columns left out) and its summary sentence; both come
from the results file that `benchmarks/record.py` wrote from the run's own output, so the README's
figures cannot drift from the measured ones.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from pathlib import Path

from tabulate import tabulate

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DEFAULT_JOB = ROOT / "docs" / "results" / "default-job.md"
START, END = "<!-- RESULT -->", "<!-- /RESULT -->"
COLUMNS = ["model", "budget_flops", "pretrain_steps", "pretrain_wall_s", "score_median", "score_min", "score_max",
           "pretrain_runs", "seeds", "not_learned"]


def _field(text: str, key: str) -> str:
    m = re.search(rf"^- {key}: (.+)$", text, re.M)
    if not m:
        raise SystemExit(f"{DEFAULT_JOB}: no '- {key}:' line; regenerate it with benchmarks/record.py")
    return m.group(1).strip()


def _first_run(text: str) -> tuple[str, str, list[str]]:
    """The first `bench run` command's line (command, wall-clock text) and its output lines."""
    m = re.search(r"^`(bench run[^`]*)`: (\d+ min \d+ s) of wall-clock[^\n]*\n\n```\n(.*?)\n```", text, re.M | re.S)
    if not m:
        raise SystemExit(f"{DEFAULT_JOB}: no recorded `bench run` output; regenerate it with benchmarks/record.py")
    return m.group(1), m.group(2), m.group(3).splitlines()


def block(text: str) -> str:
    """The README block for a default-job results file's text."""
    _, wall, lines = _first_run(text)
    table = [line for line in lines if line.startswith("|")]
    if len(table) < 3:
        raise SystemExit(f"{DEFAULT_JOB}: the recorded output has no results table")
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in table]
    header, rows = cells[0], cells[2:]
    keep = [header.index(c) for c in COLUMNS]
    task = rows[0][header.index("task")]
    sentences = [line for line in lines if line.startswith(f"{task} (")]
    control = [s for s in sentences if "no-pretraining control (" in s]
    sentence = (control or sentences or ["(the run printed no sentence)"])[0]
    shown = tabulate([[r[i] for i in keep] for r in rows], headers=COLUMNS, tablefmt="github", disable_numparse=True)
    wrapped = "\n".join(textwrap.wrap(sentence, 104, break_long_words=False, break_on_hyphens=False))
    return (f"{START}\nMeasured on this project's 2-core CPU machine (commit {_field(text, 'commit').split()[0]}, {wall};\n"
            f"[details](docs/results/default-job.md)), some columns left out:\n\n```\n{shown}\n{wrapped}\n```\n{END}")


def readme_block(readme: str) -> str:
    start, end = readme.find(START), readme.find(END)
    if start < 0 or end < 0:
        raise SystemExit(f"{README}: no {START} ... {END} markers")
    return readme[start:end + len(END)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 when the README's block differs")
    args = ap.parse_args()
    readme = README.read_text(encoding="utf-8")
    new = block(DEFAULT_JOB.read_text(encoding="utf-8"))
    old = readme_block(readme)
    if args.check:
        if old != new:
            sys.stderr.write("README.md's result block differs from docs/results/default-job.md; "
                             "run python benchmarks/readme_result.py\n")
            raise SystemExit(1)
        print("README.md's result block matches docs/results/default-job.md")
        return
    README.write_text(readme.replace(old, new), encoding="utf-8")
    print(f"written: the result block of {README}")


if __name__ == "__main__":
    main()
