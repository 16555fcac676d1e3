"""bench.fingerprint: full content hashes, cached by (path, size, mtime) across processes."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import time
from pathlib import Path

import pytest

from bench import fingerprint
from bench.errors import ConfigError, DataError
from bench.fingerprint import CACHE_FILE, checkpoint_fingerprint, file_sha256, files_fingerprint


def settled(path: Path, seconds_ago: float = 60.0) -> Path:
    """Give a file an mtime in the past: files changed within RACY_SECONDS are never cached."""
    stamp = time.time_ns() - int(seconds_ago * 1e9)
    os.utime(path, ns=(stamp, stamp))
    return path


def write(path: Path, data: bytes, *, age: float | None = 60.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return settled(path, age) if age is not None else path


@pytest.fixture
def hash_calls(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every file whose bytes are actually read and hashed (the work the cache saves)."""
    calls: list[Path] = []
    real = fingerprint._hash_file

    def counting(path: Path) -> str:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(fingerprint, "_hash_file", counting)
    return calls


def cache_entries(cache_dir: Path) -> dict:
    return json.loads((cache_dir / CACHE_FILE).read_text(encoding="utf-8"))["files"]


# ---- file_sha256 ---------------------------------------------------------------------------


def test_file_sha256_is_the_full_hash_and_the_second_call_is_cached(tmp_path: Path, hash_calls: list[Path]) -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)  # several read chunks
    file = write(tmp_path / "data.bin", data)
    cache = tmp_path / "cache"
    assert file_sha256(file) == hashlib.sha256(data).hexdigest()
    assert not cache.exists()  # no cache_dir: nothing written
    assert file_sha256(file, cache) == hashlib.sha256(data).hexdigest()
    assert len(hash_calls) == 2
    assert file_sha256(file, cache) == hashlib.sha256(data).hexdigest()
    assert len(hash_calls) == 2  # served from the cache: the file was not read again
    (entry,) = cache_entries(cache).values()
    assert entry["size"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()


def test_a_changed_file_is_never_served_a_stale_hash(tmp_path: Path, hash_calls: list[Path]) -> None:
    file = write(tmp_path / "a.txt", b"one row\n", age=100)
    cache = tmp_path / "cache"
    first = file_sha256(file, cache)
    write(file, b"two row\n", age=90)  # same size, new mtime
    assert file_sha256(file, cache) == hashlib.sha256(b"two row\n").hexdigest() != first
    stamp = file.stat().st_mtime_ns
    file.write_bytes(b"two rows\n")  # new size, mtime put back to the cached one
    os.utime(file, ns=(stamp, stamp))
    assert file_sha256(file, cache) == hashlib.sha256(b"two rows\n").hexdigest()
    assert len(hash_calls) == 3


def test_a_file_written_just_now_is_hashed_but_not_cached(tmp_path: Path, hash_calls: list[Path]) -> None:
    # a second write within the same mtime tick would keep size and mtime: trust only settled files
    file = write(tmp_path / "fresh.txt", b"fresh\n", age=None)
    cache = tmp_path / "cache"
    assert file_sha256(file, cache) == file_sha256(file, cache) == hashlib.sha256(b"fresh\n").hexdigest()
    assert len(hash_calls) == 2 and not (cache / CACHE_FILE).exists()


@pytest.mark.parametrize("garbage", [b"\x00\xff not json", b"[1, 2]", b'{"version": 1, "files": {"x": 3}}', b""])
def test_a_corrupt_cache_is_ignored_and_rewritten(tmp_path: Path, garbage: bytes) -> None:
    file = write(tmp_path / "a.txt", b"content\n")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / CACHE_FILE).write_bytes(garbage)
    assert file_sha256(file, cache) == hashlib.sha256(b"content\n").hexdigest()
    assert [entry["sha256"] for entry in cache_entries(cache).values()] == [hashlib.sha256(b"content\n").hexdigest()]


def test_an_entry_with_a_wrong_hash_type_is_not_trusted(tmp_path: Path) -> None:
    file = write(tmp_path / "a.txt", b"content\n")
    cache = tmp_path / "cache"
    cache.mkdir()
    stat = file.stat()
    bad = {str(file.resolve()): {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": None}}
    (cache / CACHE_FILE).write_text(json.dumps({"version": 1, "files": bad}))
    assert file_sha256(file, cache) == hashlib.sha256(b"content\n").hexdigest()


def test_a_writer_keeps_entries_another_process_wrote_meanwhile(tmp_path: Path) -> None:
    first, second = write(tmp_path / "1.txt", b"1\n"), write(tmp_path / "2.txt", b"2\n")
    cache = tmp_path / "cache"
    slow = fingerprint._HashCache(cache)  # loaded before the other writer saves
    slow.sha256(first)
    file_sha256(second, cache)  # "another process"
    slow.save()
    assert set(cache_entries(cache)) == {str(first.resolve()), str(second.resolve())}


def _hash_many(args: tuple[list[str], str]) -> list[str]:
    files, cache = args
    return [file_sha256(Path(file), Path(cache)) for file in files]


def test_concurrent_processes_share_one_valid_cache(tmp_path: Path) -> None:
    files = [write(tmp_path / f"f{i}.txt", f"file {i}\n".encode()) for i in range(40)]
    cache = tmp_path / "cache"
    jobs = [([str(f) for f in files[i::2] + files[: 10]], str(cache)) for i in range(4)]
    with multiprocessing.get_context("fork").Pool(4) as pool:
        results = pool.map(_hash_many, jobs)
    for (names, _), digests in zip(jobs, results):
        assert digests == [hashlib.sha256(Path(name).read_bytes()).hexdigest() for name in names]
    entries = cache_entries(cache)  # valid JSON: no writer left half a file
    assert entries and all(entry["sha256"] == hashlib.sha256(Path(key).read_bytes()).hexdigest()
                           for key, entry in entries.items())
    assert sorted(p.name for p in cache.iterdir()) == [CACHE_FILE]  # no temporary file left behind


def test_an_unreadable_cache_folder_costs_speed_not_a_result(tmp_path: Path) -> None:
    file = write(tmp_path / "a.txt", b"x\n")
    blocker = write(tmp_path / "not-a-folder", b"")
    assert file_sha256(file, blocker) == hashlib.sha256(b"x\n").hexdigest()


def test_a_missing_file_is_a_data_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope.txt"):
        file_sha256(tmp_path / "nope.txt", tmp_path)


# ---- files_fingerprint ---------------------------------------------------------------------


def test_files_fingerprint_follows_content_and_relative_names_only(tmp_path: Path) -> None:
    one = tmp_path / "one"
    a, b = write(one / "a.txt", b"alpha\n"), write(one / "sub" / "b.txt", b"beta\n")
    digest = files_fingerprint([a, b], one)
    assert len(digest) == 16 and digest == files_fingerprint([b, a], one)  # order of the list: irrelevant
    two = tmp_path / "two"
    shutil.copytree(one, two)
    assert files_fingerprint([two / "sub" / "b.txt", two / "a.txt"], two, tmp_path / "cache") == digest
    write(two / "a.txt", b"alphA\n")
    assert files_fingerprint([two / "a.txt", two / "sub" / "b.txt"], two) != digest
    (one / "sub" / "b.txt").rename(one / "sub" / "c.txt")
    assert files_fingerprint([a, one / "sub" / "c.txt"], one) != digest  # a renamed file is another layout
    assert files_fingerprint([a], None) == files_fingerprint([two.parent / "one" / "a.txt"], None)
    with pytest.raises(DataError, match="is not inside"):
        files_fingerprint([a], two)


# ---- checkpoint_fingerprint ----------------------------------------------------------------


def checkpoint(folder: Path, weights: bytes = b"weights") -> Path:
    write(folder / "config.json", b'{"model_type": "electra"}')
    write(folder / "model.safetensors", weights)
    write(folder / "README.md", b"notes")
    return folder


def test_path_checkpoint_hashes_config_and_weights(tmp_path: Path, hash_calls: list[Path]) -> None:
    folder = checkpoint(tmp_path / "ckpt")
    cache = tmp_path / "cache"
    first = checkpoint_fingerprint(f"path:{folder}", cache)
    assert sorted(p.name for p in hash_calls) == ["config.json", "model.safetensors"]
    assert checkpoint_fingerprint(f"path:{folder}", cache) == first and len(hash_calls) == 2  # cached
    write(folder / "README.md", b"other notes")
    assert checkpoint_fingerprint(f"path:{folder}") == first  # not part of the model
    write(folder / "pytorch_model.bin", b"more weights")
    assert checkpoint_fingerprint(f"path:{folder}") != first
    (folder / "pytorch_model.bin").unlink()
    write(folder / "model.safetensors", b"weightz")
    assert checkpoint_fingerprint(f"path:{folder}") != first


def test_path_checkpoint_errors_name_the_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        checkpoint_fingerprint(f"path:{tmp_path / 'nope'}")
    folder = tmp_path / "empty"
    folder.mkdir()
    with pytest.raises(DataError, match=f"{folder} has no config.json.*save_pretrained"):
        checkpoint_fingerprint(f"path:{folder}")
    write(folder / "config.json", b"{}")
    with pytest.raises(DataError, match="no weight file"):
        checkpoint_fingerprint(f"path:{folder}")
    for bad in ("electra", "s3:bucket/x", "path:"):
        with pytest.raises(ConfigError, match="path:<dir>"):
            checkpoint_fingerprint(bad)


def test_hf_checkpoint_uses_the_cached_snapshot_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    hub = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    ref = "hf:google/electra-small-discriminator"
    assert checkpoint_fingerprint(ref) == f"{ref}:uncached"
    repo = hub / "models--google--electra-small-discriminator"
    commit = "0" * 40
    write(repo / "refs" / "main", commit.encode())
    snapshot = checkpoint(repo / "snapshots" / commit)
    cached = checkpoint_fingerprint(ref, tmp_path / "cache")
    assert cached == checkpoint_fingerprint(f"path:{snapshot}")  # the same files, the same identity
    write(snapshot / "model.safetensors", b"new weights")
    assert checkpoint_fingerprint(ref, tmp_path / "cache") != cached
