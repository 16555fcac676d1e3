"""Many stores as one: `bench merge` (a new store from stores and bundles) and `StoreSet` (several stores
read as one by `bench report --results A --results B` and `bench.load([...])`, nothing copied).

A run id names a run's spec, code and data, so two stores holding the same id hold the same
experiment. The rules, the same for merging and for reading several stores:
- the same id done with the same metrics (every point) is one run, kept once (the first source's
  row and environment);
- the same id done with different metrics is a conflict: reported with both sources, never
  resolved by picking one. `bench merge` then writes nothing and exits non-zero;
- a done run wins over a failed one of the same id (the failure has no result); two failed
  ones keep the first;
- runs of other code or data have other ids and stay apart; the merge names each code and data
  fingerprint it brought together.

The target store is written in one transaction, after every source has been read and checked:
a conflict or a damaged bundle leaves it as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from bench.errors import BenchError
from bench.results.export import RUN_FIELDS, Snapshot, checkpoint_files, fingerprints, is_bundle, read_bundle, snapshot_store
from bench.results.store import DB_NAME, Metric, Store, canonical_json
from bench.results.tables import machine_label


class MergeConflict(BenchError):
    """Runs with the same id and different results: listed, with the sources of each."""

    def __init__(self, conflicts: list[str]) -> None:
        self.conflicts = conflicts
        super().__init__(f"{len(conflicts)} run(s) have the same id but different metrics, so the stores disagree "
                         f"about one experiment; nothing was merged:\n" + "\n".join(f"  {c}" for c in conflicts)
                         + "\nLook at both (bench report --results ... --model ...), then merge without the one you "
                           "do not trust.")


@dataclass
class MergeSummary:
    added: int = 0  # runs new to the target
    replaced: int = 0  # failed runs in the target replaced by a done one
    same: int = 0  # runs already there with the same metrics (or failed either way): kept once
    left_out: int = 0  # runs in flight in a source store, not merged
    checkpoints: int = 0  # checkpoint files written
    fingerprints: Counter = field(default_factory=Counter)  # (kind, label) -> runs in the merged set
    sources: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"merged {len(self.sources)} source(s): {self.added} run(s) added, {self.replaced} failed run(s) "
               f"replaced by a finished one, {self.same} already there and kept once"
               + (f", {self.left_out} still in flight left out" if self.left_out else "")
               + (f", {self.checkpoints} checkpoint file(s) copied" if self.checkpoints else "") + "."]
        for kind in sorted({k for k, _ in self.fingerprints}):
            labels = sorted((label, n) for (k, label), n in self.fingerprints.items() if k == kind)
            if len(labels) > 1:
                out.append(f"runs of {len(labels)} {kind}s, kept apart (their run ids differ; the report shows each "
                           f"configuration's latest): " + ", ".join(f"{label} ({n} run(s))" for label, n in labels))
        return out


def _points(metrics: list[list[Any]]) -> str:
    """A run's metric points in one comparable form, independent of write order."""
    return canonical_json(sorted((list(m) for m in metrics), key=lambda m: canonical_json(m)))


def combine(snapshots: Sequence[Snapshot]) -> tuple[dict[str, tuple[Snapshot, dict[str, Any]]], list[str]]:
    """The runs of several snapshots as one set (id -> (its snapshot, its run)), by the rules above, and the
    conflicts found."""
    chosen: dict[str, tuple[Snapshot, dict[str, Any]]] = {}
    conflicts: list[str] = []
    for snap in snapshots:
        for run_id, run in snap.runs.items():
            if run_id not in chosen:
                chosen[run_id] = (snap, run)
                continue
            first, kept = chosen[run_id]
            if run["status"] == "done" and kept["status"] == "done":
                if _points(first.metrics[run_id]) != _points(snap.metrics[run_id]):
                    conflicts.append(f"{run_id} ({run['kind']} {run['model']}"
                                     f"{' ' + str(run['task']) if run.get('task') else ''}): {first.source} "
                                     f"({_env_label(kept)}) and {snap.source} ({_env_label(run)}) differ in "
                                     f"{_first_difference(first.metrics[run_id], snap.metrics[run_id])}")
            elif run["status"] == "done":  # a result beats a failure
                chosen[run_id] = (snap, run)
    return chosen, conflicts


def snapshot(source: str | os.PathLike[str]) -> Snapshot:
    """A store folder's (or bench.db's) runs, or a bundle's after its checksums are checked."""
    path = Path(source)
    if is_bundle(path):
        return read_bundle(path)
    db = path / DB_NAME if path.is_dir() else path
    if not db.is_file() or db.name != DB_NAME:
        raise BenchError(f"{source} is neither a results folder holding {DB_NAME} nor a bundle from `bench export`.")
    with Store(db) as store:
        store.check_integrity()
        return snapshot_store(store, source=str(path), results=db.parent)


def merge(sources: Iterable[str | os.PathLike[str]], into: str | os.PathLike[str], *,
          checkpoints: bool = False) -> MergeSummary:
    """Merge stores and bundles into the store in `into` (made if missing), idempotently; MergeConflict
    (nothing written) when two sources, or a source and the target, disagree about a run."""
    into = Path(into)
    snaps = [snapshot(s) for s in sources]
    target_db = into / DB_NAME
    for snap in snaps:
        if snap.results is not None and snap.results.resolve() == into.resolve():
            raise BenchError(f"{snap.source} is the target itself: name other stores or bundles to merge into {into}.")
    into.mkdir(parents=True, exist_ok=True)
    summary = MergeSummary(sources=[s.source for s in snaps], left_out=sum(len(s.left_out) for s in snaps))
    with Store(target_db) as store:
        store.check_integrity()
        existing = snapshot_store(store, source=str(into), results=into)
        held = {r["id"] for r in store.runs(status=None) if r["status"] not in ("done", "failed")}
        chosen, conflicts = combine([existing, *snaps])
        conflicts += [f"{run_id}: held by a process working in {into}; merge when it is done" for run_id in held
                      if run_id in chosen and chosen[run_id][0] is not existing]
        if conflicts:
            raise MergeConflict(conflicts)
        writes = {run_id: (snap, run) for run_id, (snap, run) in chosen.items() if snap is not existing}
        summary.replaced = sum(1 for run_id in writes if run_id in existing.runs)
        summary.added = len(writes) - summary.replaced
        summary.same = sum(1 for s in snaps for run_id in s.runs) - len(writes)
        summary.fingerprints = Counter(fp for _, run in chosen.values() for fp in fingerprints(run))
        staged = _stage_checkpoints(writes, into) if checkpoints else {}
        try:
            store.put_runs([run for _, run in writes.values()],
                           {run_id: [Metric(*m) for m in snap.metrics[run_id]] for run_id, (snap, _) in writes.items()})
        except BaseException:
            for tmp in {t for t, _ in staged.values()}:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
    summary.checkpoints = _place_checkpoints(staged)
    return summary


def _stage_checkpoints(writes: dict[str, tuple[Snapshot, dict[str, Any]]], into: Path) -> dict[str, tuple[Path, Path]]:
    """Copy the checkpoint folders of the runs to be written into a temporary folder in the target (run id ->
    (temporary root, its staged run folder)); they are moved into place once the store is written."""
    staged: dict[str, tuple[Path, Path]] = {}
    tmp_root: Path | None = None
    for run_id, (snap, run) in writes.items():
        if run["kind"] != "pretrain" or run["status"] != "done":
            continue
        if snap.bundle is not None:
            members = snap.checkpoints.get(run_id, [])
        else:
            members = [name for name, _ in checkpoint_files(snap.results, run_id)] if snap.results else []
        if not members:
            continue
        if tmp_root is None:
            tmp_root = Path(tempfile.mkdtemp(prefix=".merge-", dir=into))
        if snap.bundle is not None:
            with zipfile.ZipFile(snap.bundle) as z:
                for name in members:  # names checked by read_bundle: runs/<id>/ckpt-*/...
                    target = tmp_root / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with z.open(name) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst)
        else:
            for name, path in checkpoint_files(snap.results, run_id):
                target = tmp_root / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
        staged[run_id] = (tmp_root, tmp_root / "runs" / run_id)
    return staged


def _place_checkpoints(staged: dict[str, tuple[Path, Path]]) -> int:
    """Move staged checkpoint folders into `<target>/runs/<id>/`; a checkpoint folder already there is kept."""
    count = 0
    for run_id, (tmp_root, run_dir) in staged.items():
        dest = tmp_root.parent / "runs" / run_id
        dest.mkdir(parents=True, exist_ok=True)
        for ckpt in sorted(run_dir.iterdir()):
            if not (dest / ckpt.name).exists():
                count += sum(1 for p in ckpt.rglob("*") if p.is_file())
                os.replace(ckpt, dest / ckpt.name)
    for tmp_root in {t for t, _ in staged.values()}:
        shutil.rmtree(tmp_root, ignore_errors=True)
    return count


def _env_label(run: dict[str, Any]) -> str:
    env = run.get("environment") or {}
    return machine_label(env) or "unknown machine"


def _first_difference(a: list[list[Any]], b: list[list[Any]]) -> str:
    finals_a = {m[0]: m[1] for m in a if m[2] is None}
    finals_b = {m[0]: m[1] for m in b if m[2] is None}
    for name in sorted(set(finals_a) | set(finals_b), key=lambda n: (n != "score", n)):  # the score first
        if finals_a.get(name) != finals_b.get(name):
            return f"{name} ({finals_a.get(name)} vs {finals_b.get(name)})"
    return "their series"


# --- several stores read as one -----------------------------------------------------------------------


class StoreSet:
    """Read-only: several stores as one, with the read methods of a Store the report and tidy frames use.
    Each run comes from one store, chosen by the rules above; a conflict is a MergeConflict when opened."""

    def __init__(self, paths: Sequence[str | os.PathLike[str]]) -> None:
        self.stores = [Store(p) for p in paths]
        try:
            snaps = [snapshot_store(s, source=str(s.path.parent)) for s in self.stores]
            chosen, conflicts = combine(snaps)
            if conflicts:
                raise MergeConflict(conflicts)
            by_snap = {id(snap): store for snap, store in zip(snaps, self.stores)}
            self._home = {run_id: by_snap[id(snap)] for run_id, (snap, _) in chosen.items()}
            # runs in flight are shown by the first store holding them, unless a store has them done or failed
            for store in self.stores:
                for r in store.runs(status=None):
                    self._home.setdefault(r["id"], store)
        except BaseException:
            self.close()
            raise
        self.path = " + ".join(str(s.path) for s in self.stores)

    def close(self) -> None:
        for s in self.stores:
            s.close()

    def __enter__(self) -> StoreSet:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def check_integrity(self) -> None:
        for s in self.stores:
            s.check_integrity()

    def _mine(self, store: Store, run_id: str) -> bool:
        return self._home.get(run_id) is store

    def status(self, run_id: str) -> str | None:
        store = self._home.get(run_id)
        return store.status(run_id) if store else None

    def is_done(self, run_id: str) -> bool:
        return self.status(run_id) == "done"

    def run(self, run_id: str) -> dict[str, Any] | None:
        store = self._home.get(run_id)
        return store.run(run_id) if store else None

    def runs(self, *, kind: str | None = None, status: str | None = "done") -> list[dict[str, Any]]:
        rows = [r for s in self.stores for r in s.runs(kind=kind, status=status) if self._mine(s, r["id"])]
        return sorted(rows, key=lambda r: (r["started_at"] is not None, r["started_at"] or "", r["id"]))

    def final_metrics(self, run_id: str) -> dict[str, float]:
        store = self._home.get(run_id)
        return store.final_metrics(run_id) if store else {}

    def all_final_metrics(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for s in self.stores:
            out.update({run_id: m for run_id, m in s.all_final_metrics().items() if self._mine(s, run_id)})
        return dict(sorted(out.items()))

    def series(self, run_id: str, name: str) -> list[Metric]:
        store = self._home.get(run_id)
        return store.series(run_id, name) if store else []

    def metric_rows(self, run_ids: Iterable[str] | None = None) -> list[tuple[Any, ...]]:
        wanted = None if run_ids is None else set(run_ids)
        return [row for s in self.stores for row in s.metric_rows(wanted) if self._mine(s, row[0])]


def open_stores(dbs: Sequence[str | os.PathLike[str]]) -> Store | StoreSet:
    """One store as itself, several as a StoreSet."""
    return Store(dbs[0]) if len(dbs) == 1 else StoreSet(dbs)


__all__ = ["MergeConflict", "MergeSummary", "StoreSet", "combine", "merge", "open_stores", "snapshot", "RUN_FIELDS"]
