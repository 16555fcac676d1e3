"""Pretraining examples: corpus -> tokenizer -> sentences -> token ids -> packed blocks, cached.

Every block is `[CLS] A [SEP] B [SEP] [PAD]...` (or `[CLS] A [SEP] [PAD]...`), exactly
`seq_len` ids long, holding consecutive whole sentences of ONE document, split into two
segments as the ELECTRA authors' `build_pretraining_dataset.py` does (ExampleBuilder): with
probability `single_segment_prob` (0.1) a block is one segment; otherwise segment A takes
sentences up to about `(seq_len - 3) // 2` tokens, by their rule (`split_segments`), and B the
rest, so the segment-B embedding pair tasks use at fine-tuning is trained. Token types are not
stored: `segment_ids` derives them from the [SEP]s (0 for `[CLS] A [SEP]`, 1 for `B [SEP]`).
The random draws come from a stream seeded by the document's index, so the cache is
reproducible. Left out: the authors also shorten 5% of examples to a random length.

A sentence that does not fit starts the next block (the content budget is `seq_len - 3` for a
block that may get two segments, `seq_len - 2` for one); a sentence longer than `seq_len - 2`
is cut into pieces, each a one-segment block. A block with fewer than `min_block_tokens`
content tokens is dropped (it would be mostly padding); `stats["dropped_tokens"]` counts what
that cost, `stats["two_segment_fraction"]` the share of blocks with two segments.

The cache is one per machine (`default_cache_dir()`: `$BENCH_CACHE_DIR`, else
`~/.cache/electra-bench`), not one per results folder: every project and results folder on the
machine shares one prepared corpus and one trained vocabulary per key. Layout under `cache_dir`:

    <key>/                   one prepared dataset, self-contained, written atomically
        blocks.npy           [num_blocks, seq_len]; uint16 when the vocab fits, else int32
        tokenizer/           vocab.txt + transformers files (load_tokenizer / from_pretrained)
        meta.json            spec, sources, TokenInfo, vocab.txt's sha256, counts, stats (written last)
    tokenizers/<tkey>/       the trained (or built) tokenizer, shared by every seq_len

`key` hashes the spec's shaping fields, the corpus fingerprint (the full content hash of
every corpus file, not its name or path, so the same data reached two ways shares a cache;
file hashes are cached in `cache_dir/file_hashes.json`), the vocab file's sha256 when one
is given, and FORMAT_VERSION. Each folder is built under a `.tmp-*` name and renamed into
place, so an interrupted run never leaves a half cache. Two processes preparing the same key at
once (two `bench run`s, two jobs) take turns on a lock file (`.locks/<key>`, fcntl): the second
waits and finds the first's folder. Where no lock can be taken (no fcntl, a filesystem without
locks) both build, and the rename decides: the loser's folder is discarded, the winner's kept,
and both are the same bytes (the preparation is deterministic).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from bench.backend import TokenInfo
from bench.data.corpus import CorpusSource, resolve_corpus
from bench.errors import ConfigError, DataError
from bench.fingerprint import file_sha256
from bench.data.tokenizer import VOCAB_FILE, load_tokenizer, token_info, tokenizer_from_vocab, train_wordpiece

FORMAT_VERSION = 3  # bump whenever splitting, packing, tokenizer training or the files written change
BLOCKS_FILE = "blocks.npy"
META_FILE = "meta.json"
TOKENIZER_DIR = "tokenizer"
ENCODE_CHUNK_DOCS = 256  # documents per batched encode call: big batches, bounded memory
SEGMENT_SEED = 12345  # with the document index, seeds the segment draws: the same blocks every build
CACHE_ENV = "BENCH_CACHE_DIR"  # overrides the machine's cache folder (tests point it at a temporary one)
DEFAULT_CACHE = Path("~/.cache/electra-bench")
LOCKS_DIR = ".locks"  # one empty lock file per folder being (or once) built, beside the folders

# A sentence ends at . ! ? (optionally closed by a quote or bracket) followed by space and
# a capital, digit or opening quote. Initials ("J. S. Bach", "U.S.") and a few
# abbreviations do not end sentences. Deliberately simple: a wrong split only moves a
# block boundary.
_SENTENCE_BREAK = re.compile(
    r"""(?:(?<=[.!?])|(?<=[.!?]["')\]]))"""
    r"""(?<!\b[A-Z]\.)(?<!\bMr\.)(?<!\bMrs\.)(?<!\bMs\.)(?<!\bDr\.)(?<!\bSt\.)(?<!\bvs\.)(?<!\bNo\.)"""
    r"""\s+(?=["'(\[]?[A-Z0-9])"""
)


@dataclass(frozen=True)
class DataSpec:
    """What to prepare. Names resolve under the data dir; paths are taken as given."""

    corpus: str = "enwiki-2015-wikiextractor"
    vocab: str | None = None  # data_dir/vocab/<name>/vocab.txt, or a path to a dir/file; None = train
    vocab_size: int = 8192  # only used when training a vocab
    seq_len: int = 128
    max_documents: int | None = None  # first N documents only (tests, quick CPU runs)
    min_block_tokens: int = 16  # shorter blocks are dropped instead of padded
    single_segment_prob: float = 0.1  # share of blocks kept as one segment (the ELECTRA authors' 0.1)


@dataclass(frozen=True)
class PretrainData:
    """A prepared dataset in the cache. `num_tokens` = non-padding ids ([CLS]/[SEP] included).

    `vocab_sha256` is the sha256 of the vocab.txt actually used (trained or given): part of a
    run's identity, since the same settings may train a different vocabulary on other data.
    """

    key: str
    tokenizer_dir: Path
    blocks_path: Path
    num_blocks: int
    num_tokens: int
    seq_len: int
    tokens: TokenInfo
    vocab_sha256: str
    stats: dict = field(default_factory=dict)


def default_cache_dir() -> Path:
    """The machine's cache of prepared corpora and trained vocabularies: $BENCH_CACHE_DIR, else
    ~/.cache/electra-bench. Shared by every results folder; keyed by content, never by where a run writes."""
    value = os.environ.get(CACHE_ENV)
    return Path(value).expanduser() if value else DEFAULT_CACHE.expanduser()


def prepare_pretraining_data(
    spec: DataSpec, data_dir: Path | None, cache_dir: Path | None = None, *, progress: bool = True
) -> PretrainData:
    """Prepare (or find in the cache) the packed pretraining blocks for `spec`. `cache_dir`: None =
    the machine's (`default_cache_dir()`)."""
    _check_spec(spec)
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    source = resolve_corpus(spec.corpus, data_dir)
    vocab_txt = None if spec.vocab is None else resolve_vocab(spec.vocab, data_dir)
    vocab_sha = None if vocab_txt is None else file_sha256(vocab_txt, cache_dir)
    corpus_fp = source.fingerprint(cache_dir)  # full content hash; unchanged files are not re-read
    key = data_key(spec, corpus_fp, vocab_sha)
    final = cache_dir / key
    if (final / META_FILE).is_file():
        return _load_prepared(final)

    def build(tmp: Path) -> None:
        _build(spec, source, corpus_fp, vocab_txt, vocab_sha, key, cache_dir, tmp, progress)

    _build_atomically(final, META_FILE, build)
    return _load_prepared(final)


def load_blocks(data: PretrainData) -> torch.Tensor:
    """The blocks as an int32 tensor [num_blocks, seq_len] (uint16 on disk when it fits)."""
    blocks = np.load(data.blocks_path, allow_pickle=False)  # arrays only: nothing executable is loaded
    if blocks.shape != (data.num_blocks, data.seq_len):
        raise DataError(f"{data.blocks_path}: shape {blocks.shape}, expected {(data.num_blocks, data.seq_len)}")
    return torch.from_numpy(blocks.astype(np.int32))


def data_key(spec: DataSpec, corpus_fingerprint: str, vocab_sha256: str | None) -> str:
    """Cache key: what determines the blocks' content, nothing that merely names it."""
    tokenizer = {"trained_vocab_size": spec.vocab_size} if vocab_sha256 is None else {"vocab_sha256": vocab_sha256}
    payload = {
        "format": FORMAT_VERSION,
        "corpus": corpus_fingerprint,
        "max_documents": spec.max_documents,
        "tokenizer": tokenizer,
        "seq_len": spec.seq_len,
        "min_block_tokens": spec.min_block_tokens,
        "single_segment_prob": spec.single_segment_prob,
    }
    return _short_hash(payload)


def resolve_vocab(vocab: str, data_dir: Path | None) -> Path:
    """A vocab name (`data_dir/vocab/<name>/vocab.txt`) or a path to a vocab.txt or its folder."""
    tried = []
    candidates = [] if data_dir is None else [Path(data_dir) / "vocab" / vocab]
    candidates.append(Path(vocab).expanduser())
    for candidate in candidates:
        file = candidate / VOCAB_FILE if candidate.is_dir() else candidate
        if file.is_file():
            return file
        tried.append(str(candidate))
    hint = "set BENCH_DATA_DIR (or --data) to a folder holding vocab/<name>/vocab.txt" if data_dir is None else (
        f"put it at {Path(data_dir) / 'vocab' / vocab / VOCAB_FILE}"
    )
    raise DataError(f"vocab {vocab!r} not found; tried {', '.join(tried)}. Pass a path to a vocab.txt, or {hint}.")


def split_sentences(paragraph: str) -> list[str]:
    """Split a paragraph into sentences with a simple punctuation regex."""
    return [sentence for sentence in _SENTENCE_BREAK.split(paragraph) if sentence.strip()]


def split_segments(sentences: list[list[int]], first_target: int, rng: random.Random) -> tuple[list[int], list[int]]:
    """Split a block's sentences into segments A and B by the ELECTRA authors' rule, verbatim
    (ExampleBuilder._create_example): a sentence joins A while A is empty or stays under
    `first_target` with it, or, while B is empty and A under target, on a coin flip; else B.
    (So a short later sentence may still join A, as in their code.)"""
    first: list[int] = []
    second: list[int] = []
    for sentence in sentences:
        if (not first or len(first) + len(sentence) < first_target
                or (not second and len(first) < first_target and rng.random() < 0.5)):
            first.extend(sentence)
        else:
            second.extend(sentence)
    return first, second


def pack_document(
    sentences: list[list[int]], seq_len: int, cls_id: int, sep_id: int, min_block_tokens: int,
    *, single_segment_prob: float = 0.1, rng: random.Random | None = None,
) -> list[list[int]]:
    """Pack one document's tokenized sentences into `[CLS] A [SEP] (B [SEP])` blocks (unpadded).

    `rng` draws each block's segment choices (default: a fixed seed); give each document its own."""
    rng = random.Random(SEGMENT_SEED) if rng is None else rng
    blocks: list[list[int]] = []

    def close(chosen: list[list[int]], one: bool) -> None:
        # one segment: A takes every sentence (the authors' target of 100000)
        first, second = split_segments(chosen, seq_len if one else (seq_len - 3) // 2, rng)
        blocks.append([cls_id, *first, sep_id, *second, sep_id] if second else [cls_id, *first, sep_id])

    current: list[list[int]] = []
    used = 0
    one = rng.random() < single_segment_prob  # drawn per block, before its sentences: it sets the budget
    for sentence in sentences:
        if used + len(sentence) <= seq_len - (2 if one else 3):  # two segments need a second [SEP]
            current.append(sentence)
            used += len(sentence)
            continue
        if used >= min_block_tokens:
            close(current, one)
        while len(sentence) > seq_len - 2:  # an over-long sentence becomes full one-segment pieces
            blocks.append([cls_id, *sentence[: seq_len - 2], sep_id])
            sentence = sentence[seq_len - 2 :]
        current, used = [sentence], len(sentence)  # a block's only sentence is one segment: it fits either way
        one = rng.random() < single_segment_prob
    if current and used >= min_block_tokens:
        close(current, one)
    return blocks


def segment_ids(input_ids: torch.Tensor, sep_id: int) -> torch.Tensor:
    """Token types of packed blocks [B, L]: 1 after the first [SEP] up to and including the
    second, 0 elsewhere (segment A, padding, a one-segment block). No host read: safe in a step."""
    sep = (input_ids == sep_id).long()
    before = sep.cumsum(1) - sep  # [SEP]s strictly before each position
    two = sep.sum(1, keepdim=True) >= 2  # a one-segment block's padding follows one [SEP] too
    return ((before == 1) & two).long()


def unigram_entropy(counts: np.ndarray) -> float:
    """Entropy in nats of a token-count histogram: the loss of a model that knows only frequencies."""
    counts = counts[counts > 0].astype(np.float64)
    probs = counts / counts.sum()
    return float(-(probs * np.log(probs)).sum())


def _build(
    spec: DataSpec,
    source: CorpusSource,
    corpus_fp: str,
    vocab_txt: Path | None,
    vocab_sha: str | None,
    key: str,
    cache_dir: Path,
    out: Path,
    progress: bool,
) -> None:
    timings: dict[str, float] = {}
    start = time.perf_counter()
    reading = source.documents(spec.max_documents)
    documents = list(tqdm(reading, desc="read corpus", unit="doc", total=spec.max_documents, disable=not progress))
    timings["read"] = time.perf_counter() - start
    if not documents:
        raise DataError(f"corpus {source.name!r} ({source.path or 'hub'}) yielded no documents")

    start = time.perf_counter()
    tokenizer_dir = _cached_tokenizer(spec, documents, corpus_fp, vocab_txt, vocab_sha, cache_dir, progress)
    timings["tokenizer"] = time.perf_counter() - start
    shutil.copytree(tokenizer_dir, out / TOKENIZER_DIR)
    tokenizer = load_tokenizer(out / TOKENIZER_DIR)
    info = token_info(tokenizer)
    backend = tokenizer.backend_tokenizer  # the Rust tokenizer: batched, parallel, no Python per token

    timings.update(split=0.0, encode=0.0, pack=0.0)
    dtype = np.uint16 if info.vocab_size <= np.iinfo(np.uint16).max + 1 else np.int32
    chunks: list[np.ndarray] = []
    sentences_total = tokens_total = long_sentences = 0
    bar = tqdm(total=len(documents), desc="encode + pack", unit="doc", disable=not progress)
    for first in range(0, len(documents), ENCODE_CHUNK_DOCS):
        chunk = documents[first : first + ENCODE_CHUNK_DOCS]
        start = time.perf_counter()
        texts: list[str] = []
        per_doc: list[int] = []
        for doc in chunk:
            doc_sentences = [sentence for paragraph in doc for sentence in split_sentences(paragraph)]
            texts.extend(doc_sentences)
            per_doc.append(len(doc_sentences))
        timings["split"] += time.perf_counter() - start

        start = time.perf_counter()
        ids = [encoding.ids for encoding in backend.encode_batch_fast(texts, add_special_tokens=False)]
        timings["encode"] += time.perf_counter() - start

        start = time.perf_counter()
        blocks: list[list[int]] = []
        offset = 0
        for index, count in enumerate(per_doc, start=first):
            doc_ids = [sentence for sentence in ids[offset : offset + count] if sentence]
            offset += count
            rng = random.Random(SEGMENT_SEED * 1_000_003 + index)  # per document: independent of chunking
            blocks.extend(pack_document(doc_ids, spec.seq_len, info.cls_id, info.sep_id, spec.min_block_tokens,
                                        single_segment_prob=spec.single_segment_prob, rng=rng))
        chunks.append(_pad(blocks, spec.seq_len, info.pad_id, dtype))
        sentences_total += len(texts)
        tokens_total += sum(map(len, ids))
        long_sentences += sum(len(sentence) > spec.seq_len - 2 for sentence in ids)
        timings["pack"] += time.perf_counter() - start
        bar.update(len(chunk))
    bar.close()

    start = time.perf_counter()
    all_blocks = np.concatenate(chunks) if chunks else np.zeros((0, spec.seq_len), dtype=dtype)
    if len(all_blocks) == 0:
        raise DataError(
            f"corpus {source.name!r} gave no block of at least {spec.min_block_tokens} tokens "
            f"({len(documents)} documents read)"
        )
    np.save(out / BLOCKS_FILE, all_blocks)
    counts = np.bincount(all_blocks.ravel().astype(np.int64), minlength=info.vocab_size)
    real_tokens = int(all_blocks.size - counts[info.pad_id])
    content = counts.copy()
    content[[info.pad_id, info.cls_id, info.sep_id]] = 0
    content_tokens = int(content.sum())
    timings["save"] = time.perf_counter() - start

    stats = {
        "documents": len(documents),
        "sentences": sentences_total,
        "tokens": tokens_total,  # content tokens of the whole corpus, before packing
        "long_sentences_split": long_sentences,
        "blocks": len(all_blocks),
        "block_tokens": content_tokens,  # content tokens that made it into blocks
        "dropped_tokens": tokens_total - content_tokens,
        "padding_fraction": float(counts[info.pad_id] / all_blocks.size),
        "two_segment_fraction": float(((all_blocks == info.sep_id).sum(1) == 2).mean()),
        "unk_fraction": float(counts[info.unk_id] / max(content_tokens, 1)),
        "unigram_entropy_nats": unigram_entropy(content),
        "timings_s": {name: round(seconds, 3) for name, seconds in timings.items()},
    }
    meta = {
        "format": FORMAT_VERSION,
        "key": key,
        "spec": asdict(spec),
        "corpus": {"name": source.name, "path": str(source.path) if source.path else "hub", "fingerprint": corpus_fp},
        "vocab": {"path": str(vocab_txt) if vocab_txt else None, "sha256": vocab_sha},
        "vocab_sha256": file_sha256(out / TOKENIZER_DIR / VOCAB_FILE),  # the vocab in use, trained or given
        "tokens": asdict(info),
        "num_blocks": len(all_blocks),
        "num_tokens": real_tokens,
        "seq_len": spec.seq_len,
        "dtype": np.dtype(dtype).name,
        "stats": stats,
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def _cached_tokenizer(
    spec: DataSpec,
    documents: list[list[str]],
    corpus_fp: str,
    vocab_txt: Path | None,
    vocab_sha: str | None,
    cache_dir: Path,
    progress: bool,
) -> Path:
    """The tokenizer folder, trained/built once per (corpus, vocab size) or vocab file."""
    if vocab_txt is None:
        what = {"corpus": corpus_fp, "max_documents": spec.max_documents, "vocab_size": spec.vocab_size}
    else:
        what = {"vocab_sha256": vocab_sha}
    final = cache_dir / "tokenizers" / _short_hash({"format": FORMAT_VERSION, **what})
    if (final / VOCAB_FILE).is_file():
        return final

    def build(tmp: Path) -> None:
        if vocab_txt is None:
            train_wordpiece(documents, spec.vocab_size, tmp, progress=progress)
        else:
            tokenizer_from_vocab(vocab_txt, tmp)

    _build_atomically(final, VOCAB_FILE, build)
    return final


def _load_prepared(folder: Path) -> PretrainData:
    meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT_VERSION:
        raise DataError(f"{folder}: cache format {meta.get('format')}, expected {FORMAT_VERSION}; delete the folder")
    return PretrainData(
        key=meta["key"],
        tokenizer_dir=folder / TOKENIZER_DIR,  # paths relative to the folder: a moved cache still works
        blocks_path=folder / BLOCKS_FILE,
        num_blocks=meta["num_blocks"],
        num_tokens=meta["num_tokens"],
        seq_len=meta["seq_len"],
        tokens=TokenInfo(**meta["tokens"]),
        vocab_sha256=meta["vocab_sha256"],
        stats=meta["stats"],
    )


def _build_atomically(final: Path, done_file: str, build: Callable[[Path], object]) -> None:
    """Build a folder under a temporary name and rename it into place when complete.

    Under a lock per folder (`_build_lock`): a second process wanting the same folder waits, then
    finds it done and builds nothing. Without the lock the rename still decides: a folder already
    complete wins and this build is discarded."""
    final.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(final.parent / LOCKS_DIR / final.name):
        if (final / done_file).exists():  # built by another process while this one waited
            return
        if final.exists():
            shutil.rmtree(final)  # left incomplete by hand or an older layout: rebuild
        tmp = final.parent / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            tmp.mkdir()
            build(tmp)
            try:
                os.rename(tmp, final)
            except OSError:
                if not (final / done_file).exists():  # not a concurrent writer finishing first
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _build_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (created, never deleted: deleting a lock file others may hold opens a
    race) while the block runs. No lock where fcntl or the filesystem offers none: the atomic rename
    then keeps the cache whole, at the cost of both processes building."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+b")  # noqa: SIM115 - held for the block
    except OSError:
        yield
        return
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        except OSError:  # a filesystem without locks (some NFS mounts)
            yield
            return
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _pad(blocks: list[list[int]], seq_len: int, pad_id: int, dtype: type) -> np.ndarray:
    array = np.full((len(blocks), seq_len), pad_id, dtype=dtype)
    for row, block in enumerate(blocks):
        array[row, : len(block)] = block
    return array


def _check_spec(spec: DataSpec) -> None:
    if spec.seq_len < spec.min_block_tokens + 2 or spec.seq_len < 3:
        raise ConfigError(f"seq_len {spec.seq_len} must be at least min_block_tokens + 2 = {spec.min_block_tokens + 2}")
    if spec.min_block_tokens < 1:
        raise ConfigError(f"min_block_tokens must be >= 1, got {spec.min_block_tokens}")
    if spec.vocab is None and spec.vocab_size < 100:
        raise ConfigError(f"vocab_size {spec.vocab_size} is too small for a WordPiece vocab (>= 100)")
    if not 0.0 <= spec.single_segment_prob <= 1.0:
        raise ConfigError(f"single_segment_prob must be in [0, 1], got {spec.single_segment_prob}")
    if spec.max_documents is not None and spec.max_documents < 1:
        raise ConfigError(f"max_documents must be None or >= 1, got {spec.max_documents}")


def _short_hash(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
