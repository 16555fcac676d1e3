"""Content hashes of data files that stay cheap: hash every byte once, then trust (size, mtime).

A run's identity covers its data (DESIGN.md, "Runs at scale"): the corpus, the vocabulary, the
task files and an external checkpoint's weights. Hashing those in full on every plan would cost
seconds to minutes (a checkpoint is hundreds of MB), so `file_sha256` keeps the full sha256 of
each file in a small JSON cache, `<cache_dir>/file_hashes.json`, keyed by absolute path and
trusted only while the file's size and mtime (in ns) are unchanged. Names and mtimes never enter
a hash: the same bytes reached through another path or a fresh copy give the same fingerprint.

The cache is safe to share between processes: each writer merges its entries into the newest
file on disk, writes a uniquely named temporary file and renames it into place (`os.replace`),
so a reader sees the old or the new file, never half of one; a lost update only costs a
re-hash. A corrupt or unreadable cache is ignored and rewritten. A file changed within
`RACY_SECONDS` of being hashed is hashed but not cached, since a second write within the same
mtime tick would otherwise keep the first write's hash (git's "racily clean" problem).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from bench.errors import ConfigError, DataError

CACHE_FILE = "file_hashes.json"
CACHE_VERSION = 1
RACY_SECONDS = 2.0  # files younger than this may still be written within one mtime tick: not cached
FINGERPRINT_CHARS = 16  # short digests, as the corpus and run ids elsewhere
CHECKPOINT_FILES = ("config.json",)  # plus every WEIGHT_PATTERNS match; what decides an encoder's numbers
WEIGHT_PATTERNS = ("*.safetensors", "*.bin")
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json")  # fine-tuning loads these too
_CHUNK = 1 << 20  # bytes read per update: bounded memory for multi-GB checkpoints


def file_sha256(path: Path, cache_dir: Path | None = None) -> str:
    """The full sha256 (hex) of a file's bytes, cached in `<cache_dir>/file_hashes.json` if given.

    A cached hash is returned only while the file's absolute path, size and mtime_ns all match
    the entry; otherwise the file is hashed again and the entry replaced.
    """
    cache = _HashCache(cache_dir)
    digest = cache.sha256(Path(path))
    cache.save()
    return digest


def files_fingerprint(files: Iterable[Path], root: Path | None, cache_dir: Path | None = None) -> str:
    """A short hex digest over (name relative to `root`, sha256) of each file, in name order.

    With `root` None the bare file names are used. The order of `files` does not matter; the
    names do (a renamed shard is a different corpus layout), the folder they sit in does not.
    """
    cache = _HashCache(cache_dir)
    named = sorted((_relative_name(Path(file), root), Path(file)) for file in files)
    digest = hashlib.sha256()
    for name, file in named:
        digest.update(f"{name}\0{cache.sha256(file)}\n".encode())
    cache.save()  # one write for all files: a 100-shard corpus is not 100 rewrites of the cache
    return digest.hexdigest()[:FINGERPRINT_CHARS]


def checkpoint_fingerprint(ref: str, cache_dir: Path | None = None) -> str:
    """Content identity of an external checkpoint, `path:<dir>` or `hf:<hub id>`.

    `path:<dir>`: config.json and the weight files (*.safetensors, *.bin) at the folder's top.
    `hf:<id>`: the same files of the snapshot in the local hub cache (looked up offline, never
    downloaded), or `"hf:<id>:uncached"` when the cache has no snapshot with a config.json.
    """
    kind, sep, target = ref.partition(":")
    if not sep or not target or kind not in ("path", "hf"):
        raise ConfigError(f"checkpoint reference {ref!r}: expected 'path:<dir>' or 'hf:<hub id>'")
    if kind == "path":
        folder = Path(target).expanduser()
        if not folder.is_dir():
            raise DataError(
                f"checkpoint folder {folder} (from {ref!r}) does not exist: pass a folder written by save_pretrained"
            )
        return files_fingerprint(_checkpoint_files(folder, ref), folder, cache_dir)
    snapshot = _hub_snapshot(target)
    if snapshot is None or not (snapshot / "config.json").is_file():
        return f"hf:{target}:uncached"
    return files_fingerprint(_checkpoint_files(snapshot, ref), snapshot, cache_dir)


def _checkpoint_files(folder: Path, ref: str) -> list[Path]:
    config = [folder / name for name in CHECKPOINT_FILES]
    missing = [file.name for file in config if not file.is_file()]
    if missing:
        raise DataError(
            f"checkpoint {ref!r}: {folder} has no {', '.join(missing)}; save the encoder with save_pretrained(folder)"
        )
    weights = sorted({file for pattern in WEIGHT_PATTERNS for file in folder.glob(pattern) if file.is_file()})
    if not weights:
        raise DataError(
            f"checkpoint {ref!r}: {folder} has no weight file ({', '.join(WEIGHT_PATTERNS)}); "
            f"save the encoder with save_pretrained(folder)"
        )
    tokenizer = [folder / name for name in TOKENIZER_FILES if (folder / name).is_file()]
    return config + weights + tokenizer


def _hub_snapshot(repo_id: str) -> Path | None:
    """The locally cached snapshot folder of a hub model (default revision), or None."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # no hub client: nothing can be cached either
        return None
    try:
        # local_files_only: identity must never depend on (or wait for) the network
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached, a bad id, an unreadable cache: all mean "uncached"
        return None


def _relative_name(file: Path, root: Path | None) -> str:
    if root is None:
        return file.name
    try:
        return file.relative_to(root).as_posix()
    except ValueError as error:
        raise DataError(f"{file} is not inside {root}, the folder its fingerprint is taken relative to") from error


def _hash_file(path: Path) -> str:
    """sha256 of every byte of `path` (the expensive step the cache avoids)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class _HashCache:
    """The on-disk hash cache of one cache_dir (or none: every lookup hashes)."""

    def __init__(self, cache_dir: Path | None) -> None:
        self.file = None if cache_dir is None else Path(cache_dir) / CACHE_FILE
        self.entries = _read_entries(self.file)
        self.updates: dict[str, dict] = {}

    def sha256(self, path: Path) -> str:
        key = str(path.expanduser().resolve())  # symlinks and relative spellings share one entry
        before = _stat(path)
        entry = self.entries.get(key)
        if entry and entry.get("size") == before.st_size and entry.get("mtime_ns") == before.st_mtime_ns:
            return entry["sha256"]
        try:
            digest = _hash_file(path)
        except OSError as error:
            raise DataError(
                f"cannot read {path} to hash it ({error.strerror or error}); check it exists and is readable"
            ) from error
        after = _stat(path)
        settled = time.time_ns() - after.st_mtime_ns > RACY_SECONDS * 1e9
        # cache only what was stable while read and old enough that a same-tick rewrite is over
        unchanged = (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns)
        if self.file is not None and settled and unchanged:
            entry = {"size": after.st_size, "mtime_ns": after.st_mtime_ns, "sha256": digest}
            self.entries[key] = self.updates[key] = entry
        return digest

    def save(self) -> None:
        """Merge this process's new entries into the newest cache on disk, atomically."""
        if self.file is None or not self.updates:
            return
        entries = _read_entries(self.file)  # re-read: keep what concurrent processes wrote meanwhile
        entries.update(self.updates)
        tmp = self.file.with_name(f".{self.file.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"version": CACHE_VERSION, "files": entries}, sort_keys=True), encoding="utf-8")
            os.replace(tmp, self.file)
        except OSError:  # a read-only, full or missing cache folder costs speed, never a result
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        self.updates.clear()


def _read_entries(file: Path | None) -> dict[str, dict]:
    """The cache's entries; {} for a missing, unreadable, corrupt or other-version cache."""
    if file is None:
        return {}
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # ValueError covers JSONDecodeError and UnicodeDecodeError
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION or not isinstance(data.get("files"), dict):
        return {}
    return {
        key: entry
        for key, entry in data["files"].items()
        if isinstance(entry, dict) and isinstance(entry.get("sha256"), str)  # drop malformed entries one by one
    }


def _stat(path: Path) -> os.stat_result:
    try:
        result = path.stat()
    except OSError as error:
        raise DataError(f"cannot hash {path}: {error.strerror or error}; check the path") from error
    if not path.is_file():
        raise DataError(f"cannot hash {path}: not a regular file")
    return result
