"""`bench export`: a results store as one portable, checksummed file (a bundle), and reading one back.

A bundle is a zip file holding
- `runs.json`: every finished or failed run: its spec, code version, git commit, environment (host,
  device, package versions, plug-ins and their versions), status, error, times, job and node, and
  every metric point (final values and series), as the store holds them;
- with `--checkpoints`, each pretraining run's checkpoint folders (`runs/<run id>/ckpt-*/...`);
- `manifest.json`: the format, where and when it was made, and the SHA-256 of every other member,
  itself checksummed. Reading a bundle checks every checksum first: an edited metric (or a truncated
  copy) is refused, never merged.

Runs still queued or running are left out (their result is not known yet); the manifest lists them.
Only the store is read, and only JSON and plain files are written or read: nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from bench.errors import BenchError
from bench.results.store import DB_NAME, SCHEMA_VERSION, Store, canonical_json

BUNDLE_FORMAT = "electra-bench-bundle"
BUNDLE_VERSION = 1
MANIFEST = "manifest.json"
RUNS = "runs.json"
EXPORTED = ("done", "failed")  # a run in flight has no result to carry
RUN_FIELDS = ("id", "kind", "model", "task", "size", "budget", "seed", "parent_id", "spec", "code_version", "git_sha",
              "environment", "status", "error", "started_at", "finished_at", "attempts", "job_id", "node")
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_CHECKPOINT = re.compile(r"ckpt-[0-9.e+-]+")


class BundleError(BenchError):
    """A bundle that cannot be read: damaged, tampered with, or not a bundle."""


@dataclass
class Snapshot:
    """The runs of a store or a bundle, as plain data: what merging compares and writes."""

    source: str
    runs: dict[str, dict[str, Any]]  # id -> the run's fields (RUN_FIELDS), spec and environment as objects
    metrics: dict[str, list[list[Any]]]  # id -> [name, value, step, flops, wall_s] in write order
    left_out: list[str] = field(default_factory=list)  # runs in flight, not carried
    checkpoints: dict[str, list[str]] = field(default_factory=dict)  # id -> member names of its checkpoint files
    bundle: Path | None = None  # where the checkpoint members are, for a bundle; None for a store folder
    results: Path | None = None  # the results folder, for a store


def snapshot_store(store: Store, *, source: str = "", results: Path | None = None) -> Snapshot:
    """Every finished or failed run of `store` with its metric points."""
    runs, left_out = {}, []
    for r in store.runs(status=None):
        if r["status"] not in EXPORTED:
            left_out.append(r["id"])
            continue
        runs[r["id"]] = {k: r.get(k) for k in RUN_FIELDS}
    metrics: dict[str, list[list[Any]]] = {run_id: [] for run_id in runs}
    for run_id, name, step, value, flops, wall_s in store.metric_rows(runs):
        metrics[run_id].append([name, value, step, flops, wall_s])
    return Snapshot(source or str(store.path), runs, metrics, left_out, results=results)


def checkpoint_files(results: Path, run_id: str) -> Iterator[tuple[str, Path]]:
    """(member name, file) for every file of a run's checkpoint folders (`runs/<id>/ckpt-*/`), sorted."""
    run_dir = Path(results) / "runs" / run_id
    if not run_dir.is_dir():
        return
    for ckpt in sorted(p for p in run_dir.iterdir() if p.is_dir() and _CHECKPOINT.fullmatch(p.name)):
        for path in sorted(p for p in ckpt.rglob("*") if p.is_file() and not p.is_symlink()):
            yield f"runs/{run_id}/{path.relative_to(run_dir).as_posix()}", path


def export_bundle(results: str | os.PathLike[str], out: str | os.PathLike[str], *, checkpoints: bool = False) -> dict[str, Any]:
    """Write the store in `results` to the bundle `out` (atomically: a temporary file, then renamed); returns
    its manifest."""
    results = Path(results)
    db = results / DB_NAME
    if not db.is_file():
        raise BenchError(f"no results store at {db}: point --results at the folder holding bench.db.")
    with Store(db) as store:
        store.check_integrity()
        snap = snapshot_store(store, results=results)
    runs = [dict(snap.runs[i], metrics=snap.metrics[i]) for i in sorted(snap.runs)]
    payload = json.dumps({"runs": runs}, sort_keys=True, indent=1, allow_nan=True).encode("utf-8")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    sums = {RUNS: hashlib.sha256(payload).hexdigest()}
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as z:
            z.writestr(RUNS, payload)
            if checkpoints:
                for r in runs:
                    if r["kind"] != "pretrain" or r["status"] != "done":
                        continue
                    for name, path in checkpoint_files(results, r["id"]):
                        sums[name] = _file_sha256(path)
                        z.write(path, name, compress_type=zipfile.ZIP_STORED)
            manifest = {"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "store_schema": SCHEMA_VERSION,
                        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        "source": str(results.resolve()), "runs": len(runs), "left_out": sorted(snap.left_out),
                        "checkpoints": checkpoints, "sha256": sums}
            manifest["manifest_sha256"] = _manifest_sum(manifest)
            z.writestr(MANIFEST, json.dumps(manifest, sort_keys=True, indent=1))
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return manifest


def read_bundle(path: str | os.PathLike[str]) -> Snapshot:
    """A bundle's runs, after checking every checksum; a BundleError names what is wrong."""
    path = Path(path)
    try:
        z = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise BundleError(f"{path} is not a bundle written by `bench export` ({exc}).") from None
    with z:
        names = set(z.namelist())
        if MANIFEST not in names or RUNS not in names:
            raise BundleError(f"{path} is not a bundle written by `bench export` (no {MANIFEST} or {RUNS}).")
        try:
            manifest = json.loads(z.read(MANIFEST))
        except ValueError as exc:
            raise BundleError(f"{path}: its manifest is not JSON ({exc}); the bundle is damaged.") from None
        if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"{path} is not a bundle written by `bench export`.")
        if manifest.get("version", 0) > BUNDLE_VERSION:
            raise BundleError(f"{path} is a bundle of version {manifest.get('version')}; this electra-bench reads up "
                              f"to {BUNDLE_VERSION}. Upgrade electra-bench.")
        if manifest.get("manifest_sha256") != _manifest_sum(manifest):
            raise BundleError(f"{path}: its manifest does not match its checksum: the bundle was changed after "
                              f"`bench export` wrote it, or is damaged. Export it again from its store.")
        sums = manifest.get("sha256") or {}
        if set(sums) != names - {MANIFEST}:
            raise BundleError(f"{path}: its files are not the ones its manifest lists: the bundle was changed after "
                              f"`bench export` wrote it. Export it again from its store.")
        for name, want in sorted(sums.items()):
            _safe_member(path, name)
            h = hashlib.sha256()
            with z.open(name) as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            if h.hexdigest() != want:
                raise BundleError(f"{path}: {name} does not match its checksum (SHA-256 {h.hexdigest()[:12]}..., "
                                  f"manifest {str(want)[:12]}...): the bundle was changed after `bench export` wrote "
                                  f"it, or is damaged. Nothing was read from it; export it again from its store.")
        data = json.loads(z.read(RUNS))
    runs: dict[str, dict[str, Any]] = {}
    metrics: dict[str, list[list[Any]]] = {}
    for r in data.get("runs", []):
        if not isinstance(r, dict) or not _RUN_ID.fullmatch(str(r.get("id", ""))):
            raise BundleError(f"{path}: a run without a valid id ({str(r)[:80]}).")
        if r.get("status") not in EXPORTED:
            raise BundleError(f"{path}: run {r['id']} has status {r.get('status')!r}; a bundle holds done or "
                              f"failed runs.")
        runs[r["id"]] = {k: r.get(k) for k in RUN_FIELDS}
        metrics[r["id"]] = [list(m) for m in r.get("metrics", [])]
    ckpts: dict[str, list[str]] = {}
    for name in sums:
        if name.startswith("runs/"):
            ckpts.setdefault(name.split("/")[1], []).append(name)
    return Snapshot(str(path), runs, metrics, list(manifest.get("left_out", [])), ckpts, bundle=path)


def is_bundle(path: str | os.PathLike[str]) -> bool:
    return Path(path).is_file() and zipfile.is_zipfile(path)


def fingerprints(run: dict[str, Any]) -> list[tuple[str, str]]:
    """What a run's numbers depend on besides its settings, as (kind, label) pairs: its code version, and its
    data fingerprint (a pretraining run's corpus identity, or a fine-tuning run's task data), shortened."""
    spec = run.get("spec") or {}
    out = [("code version", str(run.get("code_version")))]
    if run.get("kind") == "pretrain" and spec.get("identity"):
        out.append(("pretraining data", hashlib.sha256(canonical_json(spec["identity"]).encode()).hexdigest()[:12]))
    if run.get("kind") == "finetune" and spec.get("task_data"):
        out.append((f"{run.get('task')} task data", str(spec["task_data"])[:12]))
    return out


def _safe_member(bundle: Path, name: str) -> None:
    """Member names are `runs.json`, or `runs/<run id>/ckpt-<fraction>/<file>`: nothing that could land
    outside the run's folder when extracted."""
    if name == RUNS:
        return
    parts = PurePosixPath(name).parts
    if (len(parts) < 4 or parts[0] != "runs" or not _RUN_ID.fullmatch(parts[1]) or not _CHECKPOINT.fullmatch(parts[2])
            or any(p in ("", ".", "..") or "\\" in p for p in parts) or name.startswith("/")):
        raise BundleError(f"{bundle}: member {name!r} is not a checkpoint file of a run; refused.")


def _manifest_sum(manifest: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json({k: v for k, v in manifest.items() if k != "manifest_sha256"}).encode()
                          ).hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
