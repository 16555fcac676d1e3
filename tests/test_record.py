"""benchmarks/record.py run from the outside: a results file written from the commands' own output,
with the header tests/test_docs.py checks, and nothing written when a command fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from test_docs import results_problems

ROOT = Path(__file__).resolve().parents[1]
RECORD = [sys.executable, str(ROOT / "benchmarks" / "record.py")]


def record(out: Path, *runs: str) -> subprocess.CompletedProcess:
    args = [*RECORD, "--out", str(out), "--title", "Two commands", "--field", "preset=tiny", "--field", "seeds=3"]
    for run in runs:
        args += ["--run", run]
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def test_the_commands_output_is_written_verbatim_under_a_checked_header(tmp_path):
    out = tmp_path / "two.md"
    done = record(out, "echo 'score 0.7718'", f"{sys.executable} -c 'print(6 * 7)'")
    assert done.returncode == 0, done.stderr
    assert "score 0.7718" in done.stdout  # streamed to the terminal too
    text = out.read_text(encoding="utf-8")
    assert results_problems(out) == [], text
    assert "- command: `python benchmarks/record.py --out" in text and "- preset: tiny" in text
    assert "```\nscore 0.7718\n```" in text and "```\n42\n```" in text
    assert text.index("score 0.7718") < text.index("42")  # in the order given
    assert "`echo 'score 0.7718'`: 0 min" in text and "peak resident memory" in text


def test_a_failing_command_writes_nothing_and_keeps_the_old_file(tmp_path):
    out = tmp_path / "kept.md"
    out.write_text("the last good figures\n", encoding="utf-8")
    done = record(out, "echo first", "exit 3", "echo never")
    assert done.returncode == 3
    assert "`exit 3` exited with status 3; nothing written" in done.stderr
    assert "never" not in done.stdout
    assert out.read_text(encoding="utf-8") == "the last good figures\n"


def test_a_malformed_field_is_refused(tmp_path):
    done = subprocess.run([*RECORD, "--out", str(tmp_path / "x.md"), "--title", "T", "--field", "preset",
                           "--run", "echo hi"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "give KEY=VALUE" in done.stderr and not (tmp_path / "x.md").exists()
