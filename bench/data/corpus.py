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

import codecs
import gzip
import hashlib
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from bench.errors import DataError
from bench.fingerprint import files_fingerprint

MIN_DOC_CHARS = 50
HUB_NAME = "wikitext"
HUB_DATASET = ("wikitext", "wikitext-103-raw-v1", "train")
TEXT_SNIFF_BYTES = 65536  # decoded bytes checked at the start of each file: cheap, and enough to tell
MAX_NON_TEXT_FRACTION = 0.1  # UTF-8 text has ~0 bad characters, Latin-1 prose a few %, random bytes ~60%
_SKIP_NAMES = ("SOURCE.md",)
_SKIP_PREFIXES = ("SHA256SUMS", ".")

_DOC_OPEN = re.compile(r"^<doc\b[^>]*>\s*$")
_DOC_TITLE = re.compile(r'\btitle="([^"]*)"')
_WIKITEXT_TITLE = re.compile(r"^ = [^=].* = $")
_WIKITEXT_HEADING = re.compile(r"^ (= )+(.*?)( =)+ $")
_WIKITEXT_ESCAPES = ((" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."))
_NON_TEXT = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\ufffd]")  # C0/C1 controls but \t \n \f \r; U+FFFD


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

    def fingerprint(self, cache_dir: Path | None = None) -> str:
        """Content identity: the full sha256 of every corpus file, with its relative name.

        No mtimes, so a fresh copy of the same data gives the same fingerprint (and cache hit).
        Hashes are cached in `cache_dir` (bench.fingerprint), so only new or changed files are
        read. The hub corpus is identified by its dataset name.
        """
        if self.path is None:
            return hashlib.sha256(("hub:" + "/".join(HUB_DATASET)).encode()).hexdigest()[:16]
        root = self.path if self.path.is_dir() else self.path.parent
        return files_fingerprint(self.files(), root, cache_dir)

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


def check_text_file(file: Path) -> None:
    """Raise DataError unless the start of a corpus file (gzip or plain) reads as text.

    Looks at the first TEXT_SNIFF_BYTES (decompressed): a .gz file that is not gzip, a plain
    file that is gzip, NUL bytes, or more than MAX_NON_TEXT_FRACTION of undecodable or
    control characters all mean "not a text corpus" (a binary file read with
    errors="replace" would otherwise silently train a vocabulary of garbage).
    """
    fix = "a corpus must be UTF-8 text: WikiExtractor output or plain text with blank lines between documents"
    try:
        if file.name.endswith(".gz"):
            with gzip.open(file, "rb") as handle:
                sample = handle.read(TEXT_SNIFF_BYTES)
        else:
            with open(file, "rb") as handle:
                sample = handle.read(TEXT_SNIFF_BYTES)
    except (gzip.BadGzipFile, zlib.error, EOFError) as error:
        raise DataError(f"corpus file {file} is named .gz but is not valid gzip ({error}); {fix}") from error
    except OSError as error:
        raise DataError(f"cannot read corpus file {file} ({error.strerror or error})") from error
    if not file.name.endswith(".gz") and sample.startswith(b"\x1f\x8b"):
        raise DataError(f"corpus file {file} is gzip-compressed but not named .gz: rename it to {file.name}.gz")
    if b"\0" in sample:
        raise DataError(f"corpus file {file} contains NUL bytes (binary or UTF-16?); {fix}")
    # incremental decode: a character cut by the sample's end is not counted as bad
    text = codecs.getincrementaldecoder("utf-8")("replace").decode(sample, final=False)
    bad = len(_NON_TEXT.findall(text))
    if text and bad > MAX_NON_TEXT_FRACTION * len(text):
        raise DataError(
            f"corpus file {file} is not text: {bad} of the first {len(text)} characters are undecodable or "
            f"control characters; {fix}"
        )


def _file_documents(file: Path) -> Iterator[list[str]]:
    check_text_file(file)
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
