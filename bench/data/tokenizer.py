"""WordPiece tokenizers: train one on a corpus, or build one from a given vocab.txt.

Both paths end in a folder holding `vocab.txt` (one token per line, line number = id) and
the `transformers` files that `BertTokenizerFast.from_pretrained(dir)` / `AutoTokenizer`
load offline. The Bert tokenizer class is used on purpose: it carries the `[CLS] .. [SEP]`
post-processor a bare trained WordPiece lacks, and in transformers 5 it is the only
construction that reliably keeps the vocab (`BertTokenizerFast(vocab_file=...)` does not).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import AutoTokenizer, BertTokenizerFast, PreTrainedTokenizerFast

from bench.backend import TokenInfo
from bench.errors import DataError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # trained vocabs: ids 0..4
VOCAB_FILE = "vocab.txt"
LIMIT_ALPHABET = 1000  # as BERT's WordPiece recipe: rare characters must not eat the vocab
MIN_FREQUENCY = 2
MODEL_MAX_LENGTH = 512  # BERT's position limit, instead of transformers' "unlimited" sentinel


def train_wordpiece(
    docs_iterable: Iterable[list[str]], vocab_size: int, out_dir: Path, *, progress: bool = False
) -> Path:
    """Train a lowercased BERT-style WordPiece vocab on documents (lists of paragraphs)."""
    raw = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    raw.normalizer = normalizers.BertNormalizer(lowercase=True)
    raw.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=MIN_FREQUENCY,
        limit_alphabet=LIMIT_ALPHABET,
        special_tokens=list(SPECIAL_TOKENS),
        show_progress=progress,
    )
    # NB: tokenizers' WordPiece training breaks count ties in hash-map order, so two runs on the
    # same text may differ in a few merges (huggingface/tokenizers#1794); the cache pins one result.
    raw.train_from_iterator(_paragraph_batches(docs_iterable), trainer=trainer)
    vocab = raw.get_vocab()
    if [vocab.get(token) for token in SPECIAL_TOKENS] != list(range(len(SPECIAL_TOKENS))):
        raise DataError(f"trained vocab does not put {SPECIAL_TOKENS} at ids 0..4")
    return _save(vocab, Path(out_dir))


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
