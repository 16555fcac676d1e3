"""A benchmark's printed output, also written as a results file for docs/results/ (`--out FILE`).

    with recorded(args.out, "Pretraining step speed against stock Hugging Face", preset="tiny"):
        ...  # everything printed here goes to the terminal and, with --out, into the file

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
    """CPU architecture, cores, and the GPU if there is one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return f"{platform.machine()} CPU, {cores} cores, {gpu}"


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
    lines = [f"### {title}", "", f"- command: `{command}`", f"- date: {datetime.date.today().isoformat()}",
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
