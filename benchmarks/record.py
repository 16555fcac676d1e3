"""A benchmark's printed output, also written as a results file for docs/results/ (`--out FILE`).

    with recorded(args.out, "Pretraining step speed against stock Hugging Face", preset="tiny"):
        ...  # everything printed here goes to the terminal and, with --out, into the file

Commands that are not Python benchmarks (a `bench run`, a suite) are recorded from the outside:

    python benchmarks/record.py --out docs/results/default-job.md --title "The default job on a CPU" \
        --field preset=tiny --run "bench run --models electra,bert --task sst2 --results /tmp/dj" \
        --run "python benchmarks/run_summary.py --results /tmp/dj --phases"

runs each `--run` command in turn (in the shell, from the checkout), streams its output, and writes
the file only when every command succeeded: the header, then per command its line, its wall-clock and
peak memory, and its output verbatim.

The file starts with the header tests/test_docs.py checks (command, date, machine, commit, and any
settings given), then the output verbatim in a code block: the figures are the command's, never
copied by hand.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

ROOT = Path(__file__).resolve().parents[1]


class _Tee(io.TextIOBase):
    def __init__(self, *streams: TextIO) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self) -> None:
        for s in self.streams:
            s.flush()


def machine() -> str:
    """CPU model, cores, memory, and the GPU if there is one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpu, memory = platform.machine(), ""
    try:
        info = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        cpu = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), cpu)
        total = next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
        memory = f", {int(total.split()[1]) / 2**20:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return f"{cpu}, {cores} cores{memory}, {gpu}"


def commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "bench", "models", "tasks", "benchmarks"],
                               cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return sha + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def header(title: str, **fields: object) -> str:
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])
    code = f"`` {command} ``" if "`" in command else f"`{command}`"  # a backtick inside needs a double fence
    lines = [f"### {title}", "", f"- command: {code}", f"- date: {datetime.date.today().isoformat()}",
             f"- machine: {machine()}", f"- commit: {commit()}"]
    lines += [f"- {k}: {v}" for k, v in fields.items() if v is not None]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def recorded(out: Path | None, title: str, **fields: object) -> Iterator[None]:
    """Print as usual; with `out`, also write everything printed under a results header."""
    if out is None:
        yield
        return
    buf = io.StringIO()
    with contextlib.redirect_stdout(_Tee(sys.stdout, buf)):
        yield
    out.write_text(header(title, **fields) + "\n```\n" + buf.getvalue().rstrip("\n") + "\n```\n", encoding="utf-8")
    print(f"written: {out}")


def run_commands(commands: list[str]) -> list[tuple[str, float, float, str]]:
    """Run each shell command from the checkout, streaming its output; (command, wall s, peak RSS MB of
    its process tree, output) each. A failing command stops here with its exit status (SystemExit), and
    nothing is written."""
    import time

    env = {**os.environ, "TQDM_DISABLE": os.environ.get("TQDM_DISABLE", "1")}  # bars redraw in place
    done = []
    for command in commands:
        started = time.perf_counter()
        proc = subprocess.Popen(command, shell=True, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        lines = []
        assert proc.stdout is not None
        for raw in proc.stdout:  # bytes, split at "\n" only: a "\r" is a progress bar redrawn in place
            line = raw.decode("utf-8", errors="replace")
            sys.stdout.write(line)
            sys.stdout.flush()
            lines.append(line.rsplit("\r", 1)[-1])  # the bar's last state
        # wait4: this child's own usage, its largest descendant's resident set included (Linux: KiB)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        if code != 0:
            sys.stderr.write(f"record: `{command}` exited with status {code}; nothing written\n")
            raise SystemExit(code)
        done.append((command, wall, usage.ru_maxrss / 1024, "".join(lines)))
    return done


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="the results file to write (docs/results/NAME.md)")
    ap.add_argument("--title", required=True, help="the file's heading")
    ap.add_argument("--run", action="append", required=True, metavar="COMMAND",
                    help="a shell command to run and record (repeatable, run in order)")
    ap.add_argument("--field", action="append", default=[], metavar="KEY=VALUE",
                    help="a header line (preset, budget, examples, seeds: checked by tests/test_docs.py)")
    ap.add_argument("--note", default="", help="a sentence under the header saying what the output shows")
    args = ap.parse_args()
    fields = {}
    for item in args.field:
        key, sep, value = item.partition("=")
        if not sep or not key:
            ap.error(f"--field {item!r}: give KEY=VALUE, e.g. --field preset=tiny")
        fields[key.strip()] = value.strip()
    done = run_commands(args.run)
    parts = [header(args.title, **fields)]
    if args.note:
        parts.append(args.note.strip() + "\n")
    for command, wall, peak, output in done:
        minutes, seconds = divmod(round(wall), 60)
        parts.append(f"`{command}`: {minutes} min {seconds} s of wall-clock, peak resident memory {peak:,.0f} MB\n\n"
                     "```\n" + output.rstrip("\n") + "\n```\n")
    args.out.write_text("\n".join(parts), encoding="utf-8")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
