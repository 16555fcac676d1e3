"""WordPiece tokenizers: train one on a corpus, or build one from a given vocab.txt.

Both paths end in a folder holding `vocab.txt` (one token per line, line number = id) and
the `transformers` files that `BertTokenizerFast.from_pretrained(dir)` / `AutoTokenizer`
load offline. The Bert tokenizer class is used on purpose: it carries the `[CLS] .. [SEP]`
post-processor a bare trained WordPiece lacks, and in transformers 5 it is the only
construction that reliably keeps the vocab (`BertTokenizerFast(vocab_file=...)` does not).

Training is deterministic: the same documents give a byte-identical vocab.txt in every
process. `tokenizers`' WordPieceTrainer on its own is not (huggingface/tokenizers#1794; cause
in PR #2066): it gives continuing-subword tokens (`##c`) ids in hash-map iteration order, and
those ids break ties between merges of equal count; it also truncates the alphabet to
`limit_alphabet` by an unstable sort over hash-map order. `train_wordpiece` therefore picks
the alphabet itself (most frequent characters, ties by character) and registers every `##c`
the trainer could create up front, in sorted order, so no id depends on hash order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import AutoTokenizer, BertTokenizerFast, PreTrainedTokenizerFast

from bench.backend import TokenInfo
from bench.errors import DataError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # trained vocabs: ids 0..4
VOCAB_FILE = "vocab.txt"
LIMIT_ALPHABET = 1000  # as BERT's WordPiece recipe: rare characters must not eat the vocab
MIN_FREQUENCY = 2
MODEL_MAX_LENGTH = 512  # BERT's position limit, instead of transformers' "unlimited" sentinel
CONTINUING_PREFIX = "##"
ALPHABET_CHUNK_DOCS = 512  # documents counted per numpy step: big vectorised batches, bounded memory
_CODEPOINTS = 0x110000
_WORD, _SPACE, _PUNCT = 1, 2, 3  # pieces the pre-tokenizer makes of "a?a"


def train_wordpiece(
    docs_iterable: Iterable[list[str]], vocab_size: int, out_dir: Path, *, progress: bool = False
) -> Path:
    """Train a lowercased BERT-style WordPiece vocab on documents (lists of paragraphs).

    Deterministic: the same documents give the same vocab.txt in any process (module docstring).
    The `##c` tokens registered up front end up as ordinary vocab entries after the special
    tokens; only the five SPECIAL_TOKENS are special in the saved tokenizer.
    """
    documents = docs_iterable if isinstance(docs_iterable, list) else list(docs_iterable)  # read twice
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    alphabet, continuing = wordpiece_alphabet(documents, LIMIT_ALPHABET, normalizer, pre_tokenizer)
    raw = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    raw.normalizer = normalizer
    raw.pre_tokenizer = pre_tokenizer
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=MIN_FREQUENCY,
        limit_alphabet=LIMIT_ALPHABET,
        # every kept character carries the maximal count, so exactly this alphabet survives the limit
        initial_alphabet=alphabet,
        # ids in sorted order now, instead of lazily in hash-map order during training
        special_tokens=[*SPECIAL_TOKENS, *continuing],
        continuing_subword_prefix=CONTINUING_PREFIX,
        show_progress=progress,
    )
    raw.train_from_iterator(_paragraph_batches(documents), trainer=trainer)
    vocab = raw.get_vocab()
    if [vocab.get(token) for token in SPECIAL_TOKENS] != list(range(len(SPECIAL_TOKENS))):
        raise DataError(f"trained vocab does not put {SPECIAL_TOKENS} at ids 0..4")
    return _save(vocab, Path(out_dir))


def wordpiece_alphabet(
    documents: Sequence[list[str]],
    limit: int,
    normalizer: normalizers.Normalizer,
    pre_tokenizer: pre_tokenizers.PreTokenizer,
) -> tuple[list[str], list[str]]:
    """(alphabet, continuing tokens) for deterministic WordPiece training.

    The alphabet is the `limit` most frequent non-whitespace characters of the normalized text
    (ties broken by the character), as the trainer's own choice but without its random ties.
    The continuing tokens are `##c` for each alphabet character that occurs at a non-first
    position of a pre-tokenized word: exactly the ones the trainer would create (a superset
    would still be deterministic, a missing one would not).

    Fast: the BERT normalizer works character by character (clean-up, CJK spacing, accent
    stripping, lowercasing: no context), so it runs once per distinct character, and the text
    itself is only counted as UTF-32 code points with numpy; normalizing the whole corpus
    would cost ~15 s per 100 MB.
    """
    raw_counts = np.zeros(_CODEPOINTS, dtype=np.int64)
    inner = np.zeros(_CODEPOINTS, dtype=bool)  # normalized chars seen after another char of the same word
    # per raw code point, filled once per distinct character: what its normalization looks like
    known = np.zeros(_CODEPOINTS, dtype=bool)
    dropped = np.zeros(_CODEPOINTS, dtype=bool)  # normalizes to "" (controls, combining accents)
    starts_word = np.zeros(_CODEPOINTS, dtype=bool)  # its normalization begins with a word character
    ends_word = np.zeros(_CODEPOINTS, dtype=bool)
    head = np.zeros(_CODEPOINTS, dtype=np.uint32)  # the first normalized code point
    expansions: dict[int, str] = {}
    kinds: dict[str, int] = {}  # normalized char -> WORD, SPACE or PUNCT, as the pre-tokenizer sees it
    for first in range(0, len(documents), ALPHABET_CHUNK_DOCS):
        chunk = documents[first : first + ALPHABET_CHUNK_DOCS]
        # "\n" between paragraphs: whitespace, so no word spans two paragraphs (as in training)
        codes = np.frombuffer("\n".join(p for doc in chunk for p in doc).encode("utf-32-le"), dtype=np.uint32)
        chunk_counts = np.bincount(codes, minlength=_CODEPOINTS)
        raw_counts += chunk_counts
        new = np.flatnonzero(chunk_counts)
        for code in new[~known[new]].tolist():  # a Python loop per new distinct character only
            norm = expansions[code] = normalizer.normalize_str(chr(code))
            word = [_char_kind(char, pre_tokenizer, kinds) == _WORD for char in norm]
            for i in range(1, len(norm)):
                if word[i] and word[i - 1]:
                    inner[ord(norm[i])] = True
            known[code], dropped[code] = True, not norm
            if norm:
                starts_word[code], ends_word[code], head[code] = word[0], word[-1], ord(norm[0])
        kept = codes[~dropped[codes]]  # "e\u0301x" normalizes to "ex": x follows e
        follows = ends_word[kept[:-1]] & starts_word[kept[1:]]
        inner[head[kept[1:][follows]]] = True
    counts: dict[str, int] = {}
    for code in np.flatnonzero(raw_counts).tolist():
        for char in expansions[code]:
            counts[char] = counts.get(char, 0) + int(raw_counts[code])
    # most frequent first, ties by character: a total order, unlike the trainer's unstable sort
    ranked = sorted((char for char in counts if kinds[char] != _SPACE), key=lambda char: (-counts[char], char))
    alphabet = sorted(ranked[:limit])
    continuing = sorted(CONTINUING_PREFIX + char for char in alphabet if inner[ord(char)])
    return alphabet, continuing


def _char_kind(char: str, pre_tokenizer: pre_tokenizers.PreTokenizer, seen: dict[str, int]) -> int:
    """_WORD, _SPACE (dropped between words) or _PUNCT (a word of its own) for one character.

    Asks the pre-tokenizer itself ("a?a" gives 1, 2 or 3 pieces) rather than re-implementing its
    punctuation rule, so the answer follows the Unicode tables of the `tokenizers` build in use.
    """
    if char not in seen:
        seen[char] = len(pre_tokenizer.pre_tokenize_str(f"a{char}a"))
    return seen[char]


def tokenizer_from_vocab(vocab_txt: Path, out_dir: Path) -> Path:
    """Build the tokenizer folder for an existing WordPiece vocab.txt (e.g. BERT uncased)."""
    vocab_txt = Path(vocab_txt)
    if not vocab_txt.is_file():
        raise DataError(f"vocab file {vocab_txt} does not exist")
    vocab = read_vocab(vocab_txt)
    missing = [token for token in SPECIAL_TOKENS if token not in vocab]
    if missing:
        raise DataError(f"vocab {vocab_txt} lacks the special tokens {missing}")
    out = _save(vocab, Path(out_dir))
    # the transformers 5 trap (vocab silently replaced, everything [UNK]) must fail loudly:
    # plain lowercase words of the vocab must encode to their own ids
    words = [token for token in vocab if token.isascii() and token.isalnum() and token == token.lower()][:20]
    tokenizer = load_tokenizer(out)
    if words and tokenizer(" ".join(words), add_special_tokens=False)["input_ids"] != [vocab[w] for w in words]:
        raise DataError(f"tokenizer built from {vocab_txt} does not encode the vocab's own words to their ids")
    return out


def read_vocab(vocab_txt: Path) -> dict[str, int]:
    """vocab.txt -> {token: line number}."""
    with open(vocab_txt, encoding="utf-8") as handle:
        return {line.rstrip("\n"): index for index, line in enumerate(handle)}


def load_tokenizer(directory: Path) -> PreTrainedTokenizerFast:
    """Load a tokenizer folder written here (or any fast tokenizer folder) offline."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"tokenizer folder {directory} does not exist")
    tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    if not tokenizer.is_fast:
        raise DataError(f"tokenizer in {directory} is not a fast tokenizer")
    return tokenizer


def token_info(tokenizer: PreTrainedTokenizerFast) -> TokenInfo:
    """The special ids and vocab size a backend needs."""
    return TokenInfo(
        vocab_size=len(tokenizer),
        pad_id=tokenizer.pad_token_id,
        mask_id=tokenizer.mask_token_id,
        cls_id=tokenizer.cls_token_id,
        sep_id=tokenizer.sep_token_id,
        unk_id=tokenizer.unk_token_id,
    )


def _paragraph_batches(docs: Iterable[list[str]]) -> Iterator[list[str]]:
    for doc in docs:
        if doc:
            yield doc


def _save(vocab: dict[str, int], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    tokens = sorted(vocab, key=vocab.__getitem__)
    if [vocab[token] for token in tokens] != list(range(len(tokens))):
        raise DataError("vocab ids are not contiguous from 0")
    (out_dir / VOCAB_FILE).write_text("".join(token + "\n" for token in tokens), encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab=dict(vocab), do_lower_case=True, model_max_length=MODEL_MAX_LENGTH)
    tokenizer.save_pretrained(str(out_dir))
    return out_dir
