"""Provenance stamped into every run: code version, package versions, device, threads."""

from __future__ import annotations

import hashlib
import platform
import socket
import subprocess
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SOURCE_PACKAGES = ("bench", "models", "tasks")
# Modules that only present stored results: changing them cannot change a number, so they stay
# out of the code version and a report change never invalidates finished runs.
PRESENTATION = {"bench/cli.py", "bench/power.py",
                *(f"bench/results/{m}.py" for m in ("report", "stats", "plots", "status", "tables", "claims", "tidy",
                                                    "paper", "inference", "learning", "export", "merge")),
                *(f"bench/results/formats/{m}.py" for m in ("__init__", "markdown", "csv_format", "json_format", "latex",
                                                            "html", "parquet"))}
PACKAGES = ("torch", "transformers", "tokenizers", "datasets", "accelerate", "evaluate", "numpy", "pandas")


@lru_cache(maxsize=1)
def code_version() -> str:
    """A hash of the harness's own source (bench/, models/, tasks/): part of every run id.

    Content, not the git commit, so that editing the README or a report does not invalidate
    results, while any change to code that could change a number does.
    """
    h = hashlib.sha256()
    for pkg in SOURCE_PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel in PRESENTATION:
                continue
            h.update(rel.encode())
            h.update(path.read_bytes())
    return "src-" + h.hexdigest()[:12]


@lru_cache(maxsize=1)
def git_sha() -> str | None:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (sha + ("-dirty" if dirty else "")) if sha else None


def _version(pkg: str) -> str | None:
    try:
        return version(pkg)
    except PackageNotFoundError:
        return None


def plugins_of(plan: Any) -> dict[str, str]:
    """The plug-ins a plan uses, as they are installed here: {"model:mybert": "mypkg 0.1.0", ...}
    (the entry point's target when it comes from no distribution)."""
    from bench.registry import MODELS, TASKS

    out: dict[str, str] = {}
    for kind, registry, names in (("model", MODELS, [pt.model for pt in plan.pretrain_runs if not pt.external]),
                                  ("task", TASKS, list(plan.task_names))):
        for name in names:
            prov = registry.provenance(name)
            if prov is not None:
                out[f"{kind}:{name}"] = (f"{prov['distribution']} {prov['version']}" if prov["distribution"]
                                         else prov["entry_point"])
    return out


def environment(processes: int = 1, plugins: dict[str, str] | None = None) -> dict[str, Any]:
    """Where a run runs; `processes`: how many train it together (DDP world size); `plugins`: the
    plug-ins it uses with their distribution and version (`plugins_of`)."""
    import torch

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "cpu_count": __import__("os").cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "packages": {p: _version(p) for p in PACKAGES},
        "git_sha": git_sha(),
        "code_version": code_version(),
        "processes": processes,
        "plugins": dict(plugins or {}),
    }
    if torch.cuda.is_available():
        env["device"] = torch.cuda.get_device_name(0)
        env["cuda"] = torch.version.cuda
        env["gpu_count"] = torch.cuda.device_count()
    else:
        env["device"] = "cpu"
    return env
