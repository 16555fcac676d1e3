"""Raw-text pretraining corpora: find them, fingerprint them, read them as documents.

A document is a list of paragraphs (one string per non-empty line). Two on-disk formats
are read, plain or gzip-compressed, and told apart per file by its first non-empty line:

- WikiExtractor output: `<doc id=.. title=..>` / title line / paragraphs / `</doc>`.
  The tags and the repeated title line are dropped; documents with less than
  `MIN_DOC_CHARS` of body (redirect-like stubs) are skipped.
- plain text: documents separated by blank lines, one paragraph per line.

With no local corpus the hub's WikiText-103 (raw) is used, split into articles at its
level-1 ` = Title = ` headings.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from bench.errors import DataError

MIN_DOC_CHARS = 50
HUB_NAME = "wikitext"
HUB_DATASET = ("wikitext", "wikitext-103-raw-v1", "train")
_FINGERPRINT_BYTES = 65536  # bytes hashed at each end of a file (a gzip trailer holds CRC + size)
_SKIP_NAMES = ("SOURCE.md",)
_SKIP_PREFIXES = ("SHA256SUMS", ".")

_DOC_OPEN = re.compile(r"^<doc\b[^>]*>\s*$")
_DOC_TITLE = re.compile(r'\btitle="([^"]*)"')
_WIKITEXT_TITLE = re.compile(r"^ = [^=].* = $")
_WIKITEXT_HEADING = re.compile(r"^ (= )+(.*?)( =)+ $")
_WIKITEXT_ESCAPES = ((" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."))


@dataclass(frozen=True)
class CorpusSource:
    """Where a corpus lives: a local file/folder (`path`) or the hub's WikiText-103."""

    name: str
    path: Path | None = None
    tried: str = ""  # the local places looked at before falling back to the hub, for errors

    @property
    def is_hub(self) -> bool:
        return self.path is None

    def files(self) -> list[Path]:
        return [] if self.path is None else corpus_files(self.path)

    def fingerprint(self) -> str:
        """Cheap content identity: relative names, sizes and a hash of each file's ends.

        No mtimes, so a fresh copy of the same data gives the same fingerprint (and cache hit).
        """
        digest = hashlib.sha256()
        if self.path is None:
            digest.update(("hub:" + "/".join(HUB_DATASET)).encode())
            return digest.hexdigest()[:16]
        root = self.path if self.path.is_dir() else self.path.parent
        for file in self.files():
            size = file.stat().st_size
            digest.update(f"{file.relative_to(root).as_posix()}\0{size}\0".encode())
            with file.open("rb") as handle:
                digest.update(handle.read(_FINGERPRINT_BYTES))
                if size > _FINGERPRINT_BYTES:
                    handle.seek(max(_FINGERPRINT_BYTES, size - _FINGERPRINT_BYTES))
                    digest.update(handle.read())
        return digest.hexdigest()[:16]

    def documents(self, max_documents: int | None = None) -> Iterator[list[str]]:
        """Yield documents (lists of paragraphs), at most `max_documents` of them."""
        docs = _hub_documents(self) if self.path is None else iter_documents(self.path)
        return islice(docs, max_documents) if max_documents is not None else docs


def resolve_corpus(corpus: str, data_dir: Path | None) -> CorpusSource:
    """Find a corpus by name (`data_dir/corpus/<name>`), by path, or fall back to the hub.

    `wikitext` always means the hub. Without a data dir, an unknown name also falls back to
    the hub (loaded lazily, so a cached preparation never needs it). With a data dir, a
    missing corpus is an error naming the places tried.
    """
    if corpus == HUB_NAME:
        return CorpusSource(name=HUB_NAME, tried="(asked for the hub by name)")
    tried = []
    if data_dir is not None:
        named = Path(data_dir) / "corpus" / corpus
        if named.exists():
            return CorpusSource(name=corpus, path=named)
        tried.append(str(named))
    as_path = Path(corpus).expanduser()
    if as_path.exists():
        return CorpusSource(name=as_path.name, path=as_path)
    tried.append(f"{as_path} (as a path)")
    if data_dir is None:
        return CorpusSource(name=corpus, tried="no data dir set (BENCH_DATA_DIR); " + ", ".join(tried))
    raise DataError(
        f"corpus {corpus!r} not found; tried {', '.join(tried)}. "
        f"Put its files in {Path(data_dir) / 'corpus' / corpus}, pass a path to a file or folder, "
        f"or use corpus 'wikitext' for the hub's {HUB_DATASET[0]}/{HUB_DATASET[1]}."
    )


def corpus_files(source: Path) -> list[Path]:
    """The text files of a corpus: one file, or a folder's files sorted by relative path."""
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise DataError(f"corpus path {source} does not exist")
    files = []
    for file in source.rglob("*"):
        relative = file.relative_to(source)
        if not file.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        if file.name in _SKIP_NAMES or file.name.startswith(_SKIP_PREFIXES):
            continue
        files.append(file)
    files.sort(key=lambda f: f.relative_to(source).as_posix())
    if not files:
        raise DataError(f"corpus folder {source} holds no text files")
    return files


def iter_documents(source: Path) -> Iterator[list[str]]:
    """Yield the documents of a corpus file or folder, in file-name order."""
    for file in corpus_files(Path(source)):
        yield from _file_documents(file)


def _file_documents(file: Path) -> Iterator[list[str]]:
    opener = gzip.open if file.name.endswith(".gz") else open
    # errors="replace": one bad byte in a 100 MB corpus should not stop a preparation
    with opener(file, "rt", encoding="utf-8", errors="replace") as handle:
        lines = (line.rstrip("\r\n") for line in handle)
        first = next((line for line in lines if line.strip()), None)
        if first is None:
            return
        lines = _prepend(first, lines)
        if _DOC_OPEN.match(first.strip()):
            yield from _wikiextractor_documents(lines)
        else:
            yield from _plain_documents(lines)


def _prepend(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest


def _wikiextractor_documents(lines: Iterable[str]) -> Iterator[list[str]]:
    title: str | None = None
    body: list[str] | None = None
    expect_title = False
    for raw in lines:
        line = raw.strip()
        if _DOC_OPEN.match(line):
            match = _DOC_TITLE.search(line)
            title = match.group(1).strip() if match else None
            body, expect_title = [], True
            continue
        if line == "</doc>":
            if body is not None and len("\n".join(body)) >= MIN_DOC_CHARS:
                yield body
            body = None
            continue
        if body is None or not line:
            continue  # text outside <doc> tags, or a blank line
        if expect_title:
            expect_title = False
            if title is not None and line == title:
                continue
        body.append(line)


def _plain_documents(lines: Iterable[str]) -> Iterator[list[str]]:
    doc: list[str] = []
    for raw in lines:
        line = raw.strip()
        if line:
            doc.append(line)
        elif doc:
            yield doc
            doc = []
    if doc:
        yield doc


def wikitext_documents(lines: Iterable[str]) -> Iterator[list[str]]:
    """Split WikiText raw lines into articles at ` = Title = ` (the title itself is dropped)."""
    doc: list[str] | None = None
    for raw in lines:
        if _WIKITEXT_TITLE.match(raw.rstrip("\n")):
            if doc:
                yield doc
            doc = []
            continue
        line = raw.strip()
        if doc is None or not line:
            continue
        heading = _WIKITEXT_HEADING.match(" " + line + " ")
        if heading:
            line = heading.group(2)
        line = f" {line} "
        for escaped, plain in _WIKITEXT_ESCAPES:
            line = line.replace(escaped, plain)
        doc.append(line.strip())
    if doc:
        yield doc


def _hub_documents(source: CorpusSource) -> Iterator[list[str]]:
    import datasets  # lazy: slow to import, and absent on some machines

    name, config, split = HUB_DATASET
    try:
        dataset = datasets.load_dataset(name, config, split=split)
    except Exception as error:  # any hub failure (offline, DNS, missing cache) ends the same way
        raise DataError(
            f"corpus {source.name!r}: no local copy ({source.tried}) and the hub dataset "
            f"{name}/{config} could not be loaded ({type(error).__name__}: {error}). "
            f"Set BENCH_DATA_DIR (or --data) to a folder holding corpus/{source.name}/, "
            f"or pass a path to a corpus file or folder."
        ) from error
    yield from wikitext_documents(row["text"] for row in dataset)
