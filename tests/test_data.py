"""Corpus reading, tokenizers and block packing, on tiny synthetic data (plus shared data if present)."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
import types
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import fingerprint
from bench.data import pretrain_data
from bench.backend import TokenInfo
from bench.data.corpus import CorpusSource, check_text_file, iter_documents, resolve_corpus, wikitext_documents
from bench.errors import DataError
from bench.data.pretrain_data import DataSpec, load_blocks, pack_document, prepare_pretraining_data, split_sentences
from bench.data.tokenizer import (
    LIMIT_ALPHABET,
    SPECIAL_TOKENS,
    load_tokenizer,
    token_info,
    tokenizer_from_vocab,
    train_wordpiece,
    wordpiece_alphabet,
)
from tokenizers import normalizers, pre_tokenizers

SHARED = Path(os.environ["BENCH_DATA_DIR"]) if os.environ.get("BENCH_DATA_DIR") else None
BODY = "This body is comfortably longer than the fifty character minimum."


def wiki_doc(doc_id: int, title: str, paragraphs: list[str]) -> str:
    head = f'<doc id="{doc_id}" url="http://en.wikipedia.org/wiki?curid={doc_id}" title="{title}">'
    return "\n".join([head, title, "", *paragraphs, "</doc>"]) + "\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# ---- corpus reading ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["wiki_00", "wiki_00.gz"])
def test_wikiextractor_plain_and_gzip(tmp_path: Path, name: str) -> None:
    text = (
        wiki_doc(1, "Anarchism", ["Anarchism", BODY, "Section heading."])
        + wiki_doc(2, "Stub", ["Stub may refer to:"])  # < 50 characters: skipped
        + wiki_doc(3, "Albedo", [BODY + " Albedo."])
    )
    docs = list(iter_documents(write(tmp_path / name, text)))
    # only the title line right after <doc> is dropped; a later line equal to it is body
    assert docs == [["Anarchism", BODY, "Section heading."], [BODY + " Albedo."]]


def test_plain_text_blank_lines_separate_documents(tmp_path: Path) -> None:
    text = "\n\nfirst doc line one\nfirst doc line two\n\n\n  \nsecond doc\n\nthird doc\n"
    docs = list(iter_documents(write(tmp_path / "corpus.txt", text)))
    assert docs == [["first doc line one", "first doc line two"], ["second doc"], ["third doc"]]


def test_folder_sorted_recursive_and_skips_metadata(tmp_path: Path) -> None:
    write(tmp_path / "b" / "wiki_00.gz", wiki_doc(2, "B", [BODY + " b"]))
    write(tmp_path / "a" / "wiki_01", wiki_doc(1, "A", [BODY + " a"]))
    write(tmp_path / "c.txt", "plain c\n")
    for skipped in ("SOURCE.md", "SHA256SUMS", "SHA256SUMS.uncompressed", ".hidden", ".git/x.txt"):
        write(tmp_path / skipped, "should never be read\n")
    docs = list(iter_documents(tmp_path))
    assert docs == [[BODY + " a"], [BODY + " b"], ["plain c"]]
    source = resolve_corpus(str(tmp_path), None)
    assert [doc[0][-1] for doc in source.documents(max_documents=2)] == ["a", "b"]


def test_wikitext_split_at_level_one_headings() -> None:
    lines = [
        "",
        " = Valkyria Chronicles III = \n",
        "",
        " Senjō no Valkyria 3 is a role @-@ playing game . \n",
        " = = Gameplay = = \n",
        " It sold 1 @,@ 000 copies . \n",
        " = Tower Building = \n",
        " The tower is 3 @.@ 5 m tall . \n",
    ]
    assert list(wikitext_documents(lines)) == [
        ["Senjō no Valkyria 3 is a role-playing game .", "Gameplay", "It sold 1,000 copies ."],
        ["The tower is 3.5 m tall ."],
    ]


def test_fingerprint_ignores_mtime_and_follows_content(tmp_path: Path) -> None:
    original = tmp_path / "one"
    write(original / "wiki_00.gz", wiki_doc(1, "A", [BODY]))
    clone = tmp_path / "two"
    shutil.copytree(original, clone)  # fresh mtimes, same bytes
    os.utime(clone / "wiki_00.gz", (1, 1))
    first = CorpusSource(name="x", path=original).fingerprint()
    assert CorpusSource(name="y", path=clone).fingerprint() == first
    write(clone / "wiki_00.gz", wiki_doc(1, "A", [BODY + " changed"]))
    assert CorpusSource(name="y", path=clone).fingerprint() != first


def test_fingerprint_hashes_every_byte(tmp_path: Path) -> None:
    # a change in the middle of a big file, same size, same first and last 64 KiB
    lines = [f"paragraph {i} of a long plain-text document" for i in range(20000)]
    write(tmp_path / "corpus.txt", "\n".join(lines) + "\n")
    first = CorpusSource(name="x", path=tmp_path).fingerprint()
    lines[10000] = lines[10000].replace("paragraph", "Paragraph")
    write(tmp_path / "corpus.txt", "\n".join(lines) + "\n")
    assert CorpusSource(name="x", path=tmp_path).fingerprint() != first


def test_fingerprint_reads_unchanged_files_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = tmp_path / "corpus"
    for name in ("wiki_00.gz", "wiki_01.gz"):
        write(corpus / name, wiki_doc(1, name, [BODY]))
        os.utime(corpus / name, ns=(time.time_ns() - 10**11,) * 2)  # settled: files younger than 2 s stay uncached
    hashed: list[str] = []
    real = fingerprint._hash_file
    monkeypatch.setattr(fingerprint, "_hash_file", lambda path: hashed.append(path.name) or real(path))
    source = CorpusSource(name="x", path=corpus)
    first = source.fingerprint(tmp_path / "cache")
    assert sorted(hashed) == ["wiki_00.gz", "wiki_01.gz"]
    assert source.fingerprint(tmp_path / "cache") == first and len(hashed) == 2
    assert source.fingerprint() == first  # the cache changes the cost, never the answer


def _random_bytes(size: int, seed: int = 0, *, low: int = 0, high: int = 255) -> bytes:
    rng = random.Random(seed)
    return bytes(rng.randint(low, high) for _ in range(size)) if low or high != 255 else rng.randbytes(size)


@pytest.mark.parametrize(
    ("name", "make", "pattern"),
    [
        ("wiki_00", lambda: _random_bytes(3 * 1024 * 1024), "NUL bytes"),
        ("wiki_00.gz", lambda: _random_bytes(3 * 1024 * 1024), "named .gz but is not valid gzip"),
        ("wiki_00", lambda: gzip.compress(b"plain text\n" * 100), "gzip-compressed but not named .gz"),
        ("wiki_00.gz", lambda: gzip.compress(_random_bytes(200_000, low=1)), "not text: .* undecodable"),
        ("notes.txt", lambda: "UTF-16 text\n".encode("utf-16"), "NUL bytes"),
    ],
)
def test_a_corpus_that_is_not_text_is_refused(tmp_path: Path, name: str, make, pattern: str) -> None:
    file = tmp_path / "corpus" / "bad" / name
    file.parent.mkdir(parents=True)
    file.write_bytes(make())
    with pytest.raises(DataError, match=pattern) as error:
        list(resolve_corpus("bad", tmp_path).documents())
    assert str(file) in str(error.value)
    if "gzip-compressed" not in pattern:
        assert "must be UTF-8 text" in str(error.value) and "WikiExtractor" in str(error.value)


def test_text_with_a_few_bad_bytes_still_reads(tmp_path: Path) -> None:
    # Latin-1 prose: a few undecodable bytes are replaced, as before, not refused
    file = tmp_path / "latin1.txt"
    prose = "Caf\xe9 na\xefve r\xe9sum\xe9 and plenty of plain ASCII words around them. " * 50
    file.write_bytes(prose.encode("latin-1"))
    check_text_file(file)
    assert len(list(iter_documents(file))) == 1


@pytest.mark.skipif(
    SHARED is None or not (SHARED / "corpus" / "enwiki-2015-wikiextractor").is_dir(),
    reason="BENCH_DATA_DIR has no corpus/enwiki-2015-wikiextractor",
)
def test_shared_corpus_files_are_text() -> None:
    source = resolve_corpus("enwiki-2015-wikiextractor", SHARED)
    for file in source.files():
        check_text_file(file)
    assert len(list(source.documents(3))) == 3


def test_missing_corpus_names_places_tried(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        resolve_corpus("nope", tmp_path)
    message = str(error.value)
    assert str(tmp_path / "corpus" / "nope") in message and "wikitext" in message


def test_hub_fallback_without_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # a stand-in `datasets` module: the hub is never touched
    fake = types.ModuleType("datasets")

    def offline(*args: object, **kwargs: object) -> None:
        raise ConnectionError("offline")

    fake.load_dataset = offline
    monkeypatch.setitem(sys.modules, "datasets", fake)
    monkeypatch.chdir(tmp_path)
    source = resolve_corpus("nope", None)
    assert source.is_hub
    with pytest.raises(DataError) as error:
        list(source.documents())
    assert "nope" in str(error.value) and "wikitext-103-raw-v1" in str(error.value)
    assert "BENCH_DATA_DIR" in str(error.value)

    fake.load_dataset = lambda *a, **k: [{"text": " = T = \n"}, {"text": " Body text . \n"}]
    assert list(resolve_corpus("wikitext", tmp_path).documents()) == [["Body text ."]]


# ---- tokenizers --------------------------------------------------------------------------


def test_trained_tokenizer_adds_cls_sep_and_round_trips(tmp_path: Path) -> None:
    docs = [["The quick brown fox jumps over the lazy dog.", "Hello world, hello tokenizer."]] * 50
    out = train_wordpiece(docs, 200, tmp_path / "tok")
    vocab_lines = (out / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert tuple(vocab_lines[:5]) == SPECIAL_TOKENS
    for tokenizer in (load_tokenizer(out), __import__("transformers").BertTokenizerFast.from_pretrained(str(out))):
        info = token_info(tokenizer)
        assert (info.pad_id, info.unk_id, info.cls_id, info.sep_id, info.mask_id) == (0, 1, 2, 3, 4)
        assert info.vocab_size == len(vocab_lines)
        ids = tokenizer("Hello quick fox")["input_ids"]
        assert ids[0] == info.cls_id and ids[-1] == info.sep_id and info.unk_id not in ids
        assert tokenizer.decode(ids, skip_special_tokens=True) == "hello quick fox"


TRICKY = [
    ["ΟΔΟΣ İstanbul Café naïve e\u0301x a中b x\u200by \ufeffab Ǆx ﬁx x\u0903y", "don't x-ray ßtraße 東京 (1999)."],
    ["xx yy zz qq", "a\x00b c\u0085d ‘quoted’ «guillemets» e\u2028f"],
]


def reference_alphabet(docs: list[list[str]], limit: int) -> tuple[list[str], list[str]]:
    """What the trainer sees, the slow way: normalize and pre-tokenize every paragraph."""
    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    inner: set[str] = set()
    for doc in docs:
        for paragraph in doc:
            for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(paragraph)):
                counts.update(word)
                inner.update(word[1:])
    alphabet = sorted(sorted(counts, key=lambda char: (-counts[char], char))[:limit])
    return alphabet, sorted("##" + char for char in alphabet if char in inner)


def test_wordpiece_alphabet_is_what_the_trainer_sees() -> None:
    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda".split()
    docs = TRICKY + [[" ".join(random.Random(seed).choice(words) for _ in range(40))] for seed in range(5)]
    for limit in (1000, 30):
        alphabet, continuing = wordpiece_alphabet(docs, limit, normalizer, pre_tokenizer)
        assert (alphabet, continuing) == reference_alphabet(docs, limit)
    full, continuing = wordpiece_alphabet(docs, 1000, normalizer, pre_tokenizer)
    assert {"σ", "ο", "e", "x", "中", "(", "-", "'"} <= set(full) and " " not in full
    assert "##x" in continuing and "##σ" in continuing  # x follows e once the accent is stripped
    assert not {"##中", "##(", "##-", "##'", "##é"} & set(continuing)  # CJK and punctuation stand alone


def test_alphabet_ties_at_the_limit_go_to_the_smallest_character() -> None:
    docs = [["aaaa bbb ccc ddd"]]  # b, c and d tie for the last two places
    alphabet, continuing = wordpiece_alphabet(
        docs, 3, normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    )
    assert alphabet == ["a", "b", "c"] and continuing == ["##a", "##b", "##c"]


def test_continuing_tokens_are_ordinary_vocab_entries(tmp_path: Path) -> None:
    docs = [["The quick brown fox jumps over the lazy dog.", "Hello world, hello tokenizer #1."]] * 50
    out = train_wordpiece(docs, 200, tmp_path / "tok")
    vocab = (out / "vocab.txt").read_text(encoding="utf-8").splitlines()
    continuing = [token for token in vocab if token.startswith("##") and len(token) == 3]
    assert vocab[5 : 5 + len(continuing)] == sorted(continuing)  # registered up front, in sorted order
    assert "##q" not in vocab  # q starts every word it is in: no slot spent on a ##q nobody uses
    saved = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))
    assert [token["content"] for token in saved["added_tokens"]] == list(SPECIAL_TOKENS)
    tokenizer = load_tokenizer(out)
    ids = tokenizer("hello xylophone ##e")["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and tokens[1] == "hello"
    pieces = tokens[2:-4]  # an unseen word: its first piece, then ## continuations
    assert len(pieces) > 1 and all(piece.startswith("##") for piece in pieces[1:]) and "[UNK]" not in pieces
    assert tokenizer.convert_tokens_to_string(pieces) == "xylophone"
    assert tokens[-4:-1] == ["#", "#", "e"]  # the literal text "##e" is no special token


_TRAIN_IN_A_PROCESS = """
import json, sys
from pathlib import Path
from bench.data.tokenizer import train_wordpiece
docs = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
train_wordpiece(docs, 1500, Path(sys.argv[2]))
"""


def nondeterministic_corpus() -> list[list[str]]:
    """Random words over 34 letters (the plain trainer gave 5 different vocab.txt in 5 processes),
    plus 1,100 letters seen once each: more characters than LIMIT_ALPHABET, tied at the limit."""
    rng = random.Random(0)
    letters = "abcdefghijklmnopqrstuvwxyzéüøßþðæœ"
    docs = [
        [" ".join("".join(rng.choice(letters) for _ in range(rng.randint(2, 7))) for _ in range(30)) + "."]
        for _ in range(200)
    ]
    normalizer = normalizers.BertNormalizer(lowercase=True)
    rare = [chr(c) for c in range(0x100, 0x3000) if chr(c).isalpha() and normalizer.normalize_str(chr(c)) == chr(c)]
    assert len(rare) > LIMIT_ALPHABET + 100
    return [*docs, [" ".join(rare[: LIMIT_ALPHABET + 100])]]


def test_training_is_deterministic_across_processes(tmp_path: Path) -> None:
    corpus = tmp_path / "docs.json"
    corpus.write_text(json.dumps(nondeterministic_corpus()), encoding="utf-8")
    runs = []
    for i in range(2):  # separate processes: tokenizers' hash maps get new random seeds in each
        env = {**os.environ, "PYTHONHASHSEED": str(i), "TOKENIZERS_PARALLELISM": "false"}
        args = [sys.executable, "-c", _TRAIN_IN_A_PROCESS, str(corpus), str(tmp_path / f"tok{i}")]
        runs.append(subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True))
    for run in runs:
        assert run.wait(timeout=120) == 0, run.stderr.read() if run.stderr else ""
    first, second = ((tmp_path / f"tok{i}" / "vocab.txt").read_bytes() for i in range(2))
    assert first == second and len(first.splitlines()) > LIMIT_ALPHABET


def test_tokenizer_from_vocab_keeps_the_vocab(tmp_path: Path) -> None:
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", *[f"[unused{i}]" for i in range(3)], "[UNK]", "[CLS]", "[SEP]", "[MASK]",
                                "the", "cat", "##s", "."]) + "\n", encoding="utf-8")
    tokenizer = load_tokenizer(tokenizer_from_vocab(vocab, tmp_path / "tok"))
    assert tokenizer("The cats.")["input_ids"] == [5, 8, 9, 10, 11, 6]
    assert token_info(tokenizer).unk_id == 4


# ---- sentence splitting and packing --------------------------------------------------------


def test_split_sentences() -> None:
    text = 'He met Dr. Smith in the U.S. Army. Then he left! "Why?" She asked. In 1990 it was 3.5 m.'
    assert split_sentences(text) == [
        "He met Dr. Smith in the U.S. Army.", "Then he left!", '"Why?"', "She asked.", "In 1990 it was 3.5 m."
    ]


def test_pack_document_rules() -> None:
    cls, sep = 2, 3
    sentences = [[10] * 5, [11] * 4, [12] * 8, [13] * 25, [14] * 3]
    # one segment per block here (two-segment blocks: tests/test_segments.py)
    blocks = pack_document(sentences, seq_len=12, cls_id=cls, sep_id=sep, min_block_tokens=2, single_segment_prob=1.0)
    assert blocks == [
        [cls, *[10] * 5, *[11] * 4, sep],  # 9 tokens: the 8-token sentence does not fit in 10
        [cls, *[12] * 8, sep],
        [cls, *[13] * 10, sep],  # the 25-token sentence is cut into pieces of seq_len - 2
        [cls, *[13] * 10, sep],
        [cls, *[13] * 5, *[14] * 3, sep],  # its tail continues with the next sentence
    ]
    assert pack_document([[10] * 3], 12, cls, sep, min_block_tokens=4, single_segment_prob=1.0) == []  # short tail


# ---- the pipeline --------------------------------------------------------------------------


def synthetic_corpus(root: Path, num_docs: int = 6) -> tuple[Path, Path, dict[int, set[str]]]:
    """Documents whose words (`d<doc>w<k>`) occur in no other document, plus a vocab for them."""
    words = {d: {f"d{d}w{k}" for k in range(8)} for d in range(num_docs)}
    text = ""
    for d in range(num_docs):
        sentences = [" ".join(sorted(words[d])[(s % 8):] + sorted(words[d])) + "." for s in range(6 + d)]
        sentences = [sentence[0].upper() + sentence[1:] for sentence in sentences]
        if d == 2:
            sentences.append("D2w0 " + " ".join(sorted(words[d]) * 10) + ".")  # 81 words: longer than a block
        text += wiki_doc(d + 1, f"Doc {d}", [" ".join(sentences[:3]), " ".join(sentences[3:])])
    corpus = root / "corpus" / "synthetic"
    write(corpus / "wiki_00.gz", text)
    vocab = root / "vocab" / "synthetic" / "vocab.txt"
    vocab.parent.mkdir(parents=True)
    vocab.write_text("\n".join([*SPECIAL_TOKENS, ".", *sorted(set().union(*words.values()))]) + "\n", encoding="utf-8")
    return corpus, vocab, words


def test_blocks_are_well_formed_and_never_cross_documents(tmp_path: Path) -> None:
    _, _, words = synthetic_corpus(tmp_path)
    spec = DataSpec(corpus="synthetic", vocab="synthetic", seq_len=32, min_block_tokens=4)
    data = prepare_pretraining_data(spec, tmp_path, tmp_path / "cache", progress=False)
    blocks = load_blocks(data)
    info = data.tokens
    assert blocks.dtype == torch.int32 and blocks.shape == (data.num_blocks, 32)
    tokenizer = load_tokenizer(data.tokenizer_dir)
    doc_of = {tokenizer.convert_tokens_to_ids(w): d for d, ws in words.items() for w in ws}
    docs_seen = []
    for row in blocks.tolist():
        assert row[0] == info.cls_id
        real = [t for t in row if t != info.pad_id]
        assert row[: len(real)] == real  # padding only at the end
        assert real[-1] == info.sep_id and real.count(info.sep_id) in (1, 2) and real.count(info.cls_id) == 1
        owners = {doc_of[t] for t in real if t in doc_of}
        assert len(owners) == 1, f"block mixes documents {owners}"
        docs_seen.append(owners.pop())
    assert docs_seen == sorted(docs_seen) and set(docs_seen) == set(words)  # in order, none lost
    assert data.stats["long_sentences_split"] == 1 and data.stats["documents"] == 6
    assert data.num_tokens == int((blocks != info.pad_id).sum())
    assert data.stats["block_tokens"] + data.stats["dropped_tokens"] == data.stats["tokens"]
    assert 0 < data.stats["padding_fraction"] < 1 and data.stats["unigram_entropy_nats"] > 0
    used = hashlib.sha256((data.tokenizer_dir / "vocab.txt").read_bytes()).hexdigest()
    given = hashlib.sha256((tmp_path / "vocab" / "synthetic" / "vocab.txt").read_bytes()).hexdigest()
    assert data.vocab_sha256 == used == given
    meta = json.loads((data.blocks_path.parent / "meta.json").read_text(encoding="utf-8"))
    assert meta["vocab_sha256"] == used


def test_trained_vocab_pipeline_and_max_documents(tmp_path: Path) -> None:
    synthetic_corpus(tmp_path)
    spec = DataSpec(corpus="synthetic", vocab_size=120, seq_len=32, min_block_tokens=4, max_documents=3)
    data = prepare_pretraining_data(spec, tmp_path, tmp_path / "cache", progress=False)
    assert data.stats["documents"] == 3 and data.tokens.vocab_size <= 120
    assert (data.tokens.pad_id, data.tokens.cls_id, data.tokens.sep_id) == (0, 2, 3)
    assert np.load(data.blocks_path).dtype == np.uint16  # documented: uint16 on disk when it fits
    decoded = load_tokenizer(data.tokenizer_dir).decode(load_blocks(data)[0].tolist(), skip_special_tokens=True)
    assert decoded.startswith("d0w")


def test_cache_hit_and_key_changes_with_corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus, _, _ = synthetic_corpus(tmp_path)
    spec = DataSpec(corpus="synthetic", vocab="synthetic", seq_len=32, min_block_tokens=4)
    cache = tmp_path / "cache"
    first = prepare_pretraining_data(spec, tmp_path, cache, progress=False)
    meta = first.blocks_path.parent / "meta.json"
    stamp = (meta.stat().st_mtime_ns, first.blocks_path.stat().st_mtime_ns)

    def no_rebuild(*args: object, **kwargs: object) -> None:
        raise AssertionError("cache miss: the corpus was tokenized again")

    monkeypatch.setattr(pretrain_data, "_build", no_rebuild)
    again = prepare_pretraining_data(spec, tmp_path, cache, progress=False)
    assert again == first
    assert (meta.stat().st_mtime_ns, first.blocks_path.stat().st_mtime_ns) == stamp
    by_path = prepare_pretraining_data(  # same bytes reached by path: same key
        DataSpec(corpus=str(corpus), vocab=str(tmp_path / "vocab" / "synthetic"), seq_len=32, min_block_tokens=4),
        None, cache, progress=False,
    )
    assert by_path.key == first.key
    monkeypatch.undo()

    write(corpus / "wiki_01", wiki_doc(99, "New", [BODY]))
    changed = prepare_pretraining_data(spec, tmp_path, cache, progress=False)
    assert changed.key != first.key and changed.num_blocks > first.num_blocks
    longer = prepare_pretraining_data(replace(spec, seq_len=64), tmp_path, cache, progress=False)
    assert longer.key != changed.key
    assert not [p for p in cache.rglob(".tmp-*")]


def test_interrupted_run_leaves_no_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synthetic_corpus(tmp_path)
    spec = DataSpec(corpus="synthetic", vocab="synthetic", seq_len=32, min_block_tokens=4)

    def interrupted(*args: object, **kwargs: object) -> list:
        raise KeyboardInterrupt

    monkeypatch.setattr(pretrain_data, "pack_document", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_pretraining_data(spec, tmp_path, tmp_path / "cache", progress=False)
    leftovers = [p.name for p in (tmp_path / "cache").iterdir()]
    leftovers = [name for name in leftovers  # file hashes may be cached; lock files stay (bench/data/pretrain_data.py)
                 if name not in (fingerprint.CACHE_FILE, pretrain_data.LOCKS_DIR)]
    assert leftovers == ["tokenizers"]  # the finished tokenizer is kept; no block folder, no temp
    monkeypatch.undo()
    assert prepare_pretraining_data(spec, tmp_path, tmp_path / "cache", progress=False).num_blocks > 0


def test_missing_vocab_names_places_tried(tmp_path: Path) -> None:
    synthetic_corpus(tmp_path)
    with pytest.raises(DataError) as error:
        spec = DataSpec(corpus="synthetic", vocab="nope")
        prepare_pretraining_data(spec, tmp_path, tmp_path / "cache", progress=False)
    assert str(tmp_path / "vocab" / "nope") in str(error.value)


# ---- the shared data, when BENCH_DATA_DIR has it -------------------------------------------


@pytest.mark.skipif(
    SHARED is None or not (SHARED / "corpus" / "enwiki-2015-wikiextractor").is_dir(),
    reason="BENCH_DATA_DIR has no corpus/enwiki-2015-wikiextractor",
)
def test_shared_wikipedia_corpus(tmp_path: Path) -> None:
    spec = DataSpec(max_documents=200, vocab_size=4096)
    data = prepare_pretraining_data(spec, SHARED, tmp_path, progress=False)
    blocks = load_blocks(data)
    assert data.stats["documents"] == 200 and blocks.shape == (data.num_blocks, 128)
    assert bool((blocks[:, 0] == data.tokens.cls_id).all())
    two = data.stats["two_segment_fraction"]  # a block holds one [SEP], or two
    assert int((blocks == data.tokens.sep_id).sum()) == round(data.num_blocks * (1 + two)) and 0.5 < two < 0.95
    assert data.stats["unk_fraction"] < 0.001
    assert 6.0 < data.stats["unigram_entropy_nats"] < 8.0  # NOTES: 7.00 nats on the whole corpus
    assert data.stats["padding_fraction"] < 0.3


@pytest.mark.skipif(
    SHARED is None or not (SHARED / "vocab" / "bert-base-uncased" / "vocab.txt").is_file(),
    reason="BENCH_DATA_DIR has no vocab/bert-base-uncased",
)
def test_shared_bert_vocab(tmp_path: Path) -> None:
    vocab = SHARED / "vocab" / "bert-base-uncased" / "vocab.txt"
    tokenizer = load_tokenizer(tokenizer_from_vocab(vocab, tmp_path / "tok"))
    assert tokenizer("the cat")["input_ids"] == [101, 1996, 4937, 102]
    assert token_info(tokenizer) == TokenInfo(30522, pad_id=0, mask_id=103, cls_id=101, sep_id=102, unk_id=100)
    corpus = SHARED / "corpus" / "enwiki-2015-wikiextractor"
    if corpus.is_dir():
        spec = DataSpec(vocab="bert-base-uncased", max_documents=20)
        data = prepare_pretraining_data(spec, SHARED, tmp_path / "cache", progress=False)
        assert data.tokens.vocab_size == 30522 and data.stats["unk_fraction"] < 0.001


# --- the machine's cache (one per machine, not per results folder) ------------------------------------


def test_machine_cache_folder_is_home_cache_or_the_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(pretrain_data.CACHE_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert pretrain_data.default_cache_dir() == tmp_path / "home" / ".cache" / "electra-bench"
    monkeypatch.setenv(pretrain_data.CACHE_ENV, str(tmp_path / "elsewhere"))
    assert pretrain_data.default_cache_dir() == tmp_path / "elsewhere"
    synthetic_corpus(tmp_path)
    spec = DataSpec(corpus="synthetic", vocab_size=120, seq_len=32, min_block_tokens=4)
    data = prepare_pretraining_data(spec, tmp_path, progress=False)  # no cache_dir: the machine's
    assert data.blocks_path.parent.parent == tmp_path / "elsewhere"
    assert not (tmp_path / "home").exists()


def _micro_losses(data: pretrain_data.PretrainData, out_dir: Path, steps: int = 3) -> list[float]:
    """A few bert steps of the micro shape on `data`: what a run computes from the prepared cache."""
    from bench.train.pretrain import OptimSettings, plan_pretraining, pretrain
    from models.bert import BertBackend
    from models.sizes import SizePreset

    size = SizePreset(name="micro", description="", hidden=32, layers=1, heads=2, ffn=64, embedding=32,
                      gen_hidden=16, gen_heads=1, gen_ffn=32, vocab_size=120, max_position=64, seq_len=32,
                      pretrain_batch=4)
    torch.manual_seed(0)
    backend = BertBackend(size, data.tokens, seq_len=32)
    per_step = backend.flops_per_step(4, 32).total
    plan = plan_pretraining(backend, budget_flops=steps * per_step, convention="paper", batch_size=4, seq_len=32,
                            warmup_fraction=0.1)
    result = pretrain(backend, load_blocks(data), plan, OptimSettings(lr=1e-3), pad_id=data.tokens.pad_id,
                      out_dir=out_dir, save=lambda m, d: None, progress=False, resume=None, log_every=1,
                      precision="fp32")
    return [m.value for m in result.series if m.name == "loss"]


def test_results_are_identical_from_a_warm_or_a_cold_machine_cache(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    synthetic_corpus(tmp_path)
    spec = DataSpec(corpus="synthetic", vocab_size=120, seq_len=32, min_block_tokens=4)
    cold = prepare_pretraining_data(spec, tmp_path, tmp_path / "a", progress=False)
    cold_blocks, cold_losses = load_blocks(cold), _micro_losses(cold, tmp_path / "run-cold")

    def no_rebuild(*args: object, **kwargs: object) -> None:
        raise AssertionError("warm cache: nothing may be built again")

    with monkeypatch.context() as m:
        m.setattr(pretrain_data, "_build", no_rebuild)
        m.setattr(pretrain_data, "train_wordpiece", no_rebuild)
        warm = prepare_pretraining_data(spec, tmp_path, tmp_path / "a", progress=False)
    other = prepare_pretraining_data(spec, tmp_path, tmp_path / "b", progress=False)  # cold, on another "machine"
    for data in (warm, other):
        assert (data.key, data.vocab_sha256, data.tokens, data.num_blocks) == \
            (cold.key, cold.vocab_sha256, cold.tokens, cold.num_blocks)  # the run id's data identity
        assert torch.equal(load_blocks(data), cold_blocks)
        assert (data.tokenizer_dir / "vocab.txt").read_bytes() == (cold.tokenizer_dir / "vocab.txt").read_bytes()
    assert _micro_losses(warm, tmp_path / "run-warm") == cold_losses == _micro_losses(other, tmp_path / "run-b")


def test_two_processes_preparing_at_once_build_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    synthetic_corpus(tmp_path)
    spec = DataSpec(corpus="synthetic", vocab_size=120, seq_len=32, min_block_tokens=4)
    builds: list[int] = []
    real_build = pretrain_data._build

    def slow_build(*args: object, **kwargs: object) -> None:
        builds.append(1)
        time.sleep(0.5)  # the other preparer arrives while this one builds
        real_build(*args, **kwargs)

    monkeypatch.setattr(pretrain_data, "_build", slow_build)
    found: list[pretrain_data.PretrainData] = []
    errors: list[BaseException] = []

    def prepare() -> None:
        try:
            found.append(prepare_pretraining_data(spec, tmp_path, tmp_path / "cache", progress=False))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=prepare) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(found) == 2 and found[0] == found[1]
    assert len(builds) == 1  # the second waited on the lock and found the first's folder
    assert not list((tmp_path / "cache").rglob(".tmp-*"))


def test_without_a_lock_the_loser_of_the_rename_is_discarded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import contextlib

    monkeypatch.setattr(pretrain_data, "_build_lock", lambda path: contextlib.nullcontext())  # no fcntl, say
    final = tmp_path / "cache" / "key"

    def build(tmp: Path) -> None:
        # while this process builds, another finishes the same folder first
        winner = tmp_path / "cache" / ".tmp-winner"
        winner.mkdir(parents=True)
        (winner / "payload").write_text("winner", encoding="utf-8")
        (winner / "meta.json").write_text("{}", encoding="utf-8")
        os.rename(winner, final)
        (tmp / "payload").write_text("loser", encoding="utf-8")
        (tmp / "meta.json").write_text("{}", encoding="utf-8")

    pretrain_data._build_atomically(final, "meta.json", build)
    assert (final / "payload").read_text(encoding="utf-8") == "winner"
    assert [p.name for p in final.parent.iterdir() if p.name != pretrain_data.LOCKS_DIR] == ["key"]  # loser gone


def test_preflight_prepares_into_the_machine_cache_shared_by_results_folders(
        micro_project: Path, machine_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from bench.config import load_experiment
    from bench.entries import register_config_entries
    from bench.plan import plan_experiment
    from bench.preflight import preflight
    from bench.registry import TASKS

    monkeypatch.chdir(micro_project)
    exp = load_experiment(micro_project / "bench.toml")
    TASKS.names()  # discovered now, so the copy below holds every built-in
    monkeypatch.setattr(TASKS, "_entries", dict(TASKS._entries))  # the registry as it was, after this test
    register_config_entries(exp)  # the CSV task "toy" bench.toml declares
    first = preflight(plan_experiment(exp), progress=False)
    assert (machine_cache / first.data.key / "meta.json").is_file()
    assert not (micro_project / "results" / "cache" / first.data.key).exists()
    monkeypatch.setattr(pretrain_data, "_build", lambda *a, **k: pytest.fail("prepared again for another folder"))
    other = preflight(plan_experiment(dataclasses.replace(exp, results="results-2")), progress=False)
    assert other.data == first.data
    assert [pt.id for pt in other.plan.pretrain_runs] == [pt.id for pt in first.plan.pretrain_runs]
