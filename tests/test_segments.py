"""Two-segment pretraining blocks, as the ELECTRA authors build them: the split rule, the rate,
the derived token types, and that pretraining trains the segment-B embedding."""

from __future__ import annotations

import gzip
import random
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from bench.backend import TokenInfo
from bench.data import pretrain_data
from bench.data.pretrain_data import (
    DataSpec,
    data_key,
    load_blocks,
    pack_document,
    prepare_pretraining_data,
    segment_ids,
    split_segments,
)
from bench.data.tokenizer import SPECIAL_TOKENS, load_tokenizer, tokenizer_from_vocab
from bench.errors import ConfigError
from bench.objectives import RowRandom
from bench.registry import MODELS
from bench.train.pretrain import OptimSettings, plan_pretraining, pretrain
from models.electra import ElectraBackend
from models.sizes import SizePreset

CLS, SEP, PAD = 2, 3, 0
TOK = TokenInfo(vocab_size=64, pad_id=PAD, unk_id=1, cls_id=CLS, sep_id=SEP, mask_id=4)
SIZE = SizePreset(name="segments-test", description="test-only", hidden=32, layers=2, heads=2, ffn=64, embedding=32,
                  gen_hidden=16, gen_heads=1, gen_ffn=32, vocab_size=64, max_position=64, dropout=0.0)
SEQ = 32
BUILT_IN = ("electra", "bert", "electra-15", "replace-mlm", "all-tokens-mlm", "electra-gdes")


@pytest.fixture(autouse=True)
def one_thread():
    # tiny models on a shared 2-core machine: more intra-op threads only contend
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class Scripted(random.Random):
    """A random stream that returns the given draws, in order."""

    def __init__(self, draws: list[float]) -> None:
        super().__init__(0)
        self.draws = list(draws)

    def random(self) -> float:
        return self.draws.pop(0)


def documents(n: int, seed: int = 0, vocab: tuple[int, int] = (5, 64)) -> list[list[list[int]]]:
    """`n` documents of 20-40 short sentences (3-7 ids, never special)."""
    rng = random.Random(seed)
    return [[[rng.randrange(*vocab) for _ in range(rng.randint(3, 7))] for _ in range(rng.randint(20, 40))]
            for _ in range(n)]


def content(block: list[int]) -> list[int]:
    return [t for t in block if t not in (CLS, SEP)]


# ---- the split rule, on hand-made blocks ----------------------------------------------------


def test_split_follows_the_authors_rule() -> None:
    # target 6: A takes sentences while it stays under 6; past that, a coin (< 0.5: A) while B is empty
    sentences = [[10] * 3, [11] * 2, [12] * 4, [13] * 3]
    assert split_segments(sentences, 6, Scripted([0.7])) == ([10] * 3 + [11] * 2, [12] * 4 + [13] * 3)
    assert split_segments(sentences, 6, Scripted([0.3])) == ([10] * 3 + [11] * 2 + [12] * 4, [13] * 3)
    # verbatim, quirk included: a short later sentence that fits under the target still joins A
    assert split_segments([[1] * 5, [2] * 4, [3]], 8, Scripted([0.9])) == ([1] * 5 + [3], [2] * 4)
    assert split_segments([[1] * 5, [2] * 4], 10**5, Scripted([])) == ([1] * 5 + [2] * 4, [])  # one segment


def test_pack_document_two_segments_by_hand() -> None:
    sentences = [[10] * 3, [11] * 2, [12] * 4, [13] * 3]  # 12 ids: one block of 16, A's target (16 - 3) // 2 = 6
    two = pack_document(sentences, 16, CLS, SEP, 2, rng=Scripted([0.9, 0.7]))  # block coin 0.9 >= 0.1: two
    assert two == [[CLS, *[10] * 3, *[11] * 2, SEP, *[12] * 4, *[13] * 3, SEP]]
    one = pack_document(sentences, 16, CLS, SEP, 2, rng=Scripted([0.05]))  # < 0.1: one segment
    assert one == [[CLS, *[10] * 3, *[11] * 2, *[12] * 4, *[13] * 3, SEP]]
    # a block that may get two segments keeps one id free for the second [SEP]: 14 ids fit 16 only alone
    full = [[10] * 7, [11] * 7]
    assert [len(b) for b in pack_document(full, 16, CLS, SEP, 2, rng=Scripted([0.05, 0.5]))] == [16]
    assert [len(b) for b in pack_document(full, 16, CLS, SEP, 2, rng=Scripted([0.9, 0.9]))] == [9, 9]


# ---- (a) the rate, and what a block may hold ------------------------------------------------


@pytest.mark.parametrize("single", [0.1, 0.5])
def test_two_segments_at_the_stated_rate(single: float) -> None:
    seq, longest = 32, 7
    target = (seq - 3) // 2
    rate, counted = [], 0
    for index, doc in enumerate(documents(300)):
        blocks = pack_document(doc, seq, CLS, SEP, 1, single_segment_prob=single, rng=random.Random(index))
        for block in blocks:
            assert len(block) <= seq and block[0] == CLS and block[-1] == SEP and block.count(SEP) in (1, 2)
            if len(content(block)) >= target + longest:  # full enough that the rule always finds a B
                rate.append(block.count(SEP) == 2)
        # every id of the document lands in a block exactly once (the rule may move a short sentence into A)
        assert sorted(t for b in blocks for t in content(b)) == sorted(t for s in doc for t in s)
        counted += len(blocks)
    assert counted > 1500 and len(rate) > 0.8 * counted
    assert sum(rate) / len(rate) == pytest.approx(1 - single, abs=0.04)


def test_one_segment_only_when_asked() -> None:
    for index, doc in enumerate(documents(50)):
        blocks = pack_document(doc, 32, CLS, SEP, 1, single_segment_prob=1.0, rng=random.Random(index))
        assert all(block.count(SEP) == 1 and len(block) <= 32 for block in blocks)


def write_corpus(root: Path, num_docs: int = 40) -> dict[int, set[str]]:
    """Documents whose words (`d<doc>w<k>`) occur in no other document, plus a vocab for them."""
    rng = random.Random(0)
    words = {d: [f"d{d}w{k}" for k in range(8)] for d in range(num_docs)}
    text = ""
    for d in range(num_docs):
        sentences = [" ".join(rng.choice(words[d]) for _ in range(rng.randint(3, 6))) + "." for _ in range(30)]
        paragraph = " ".join(s[0].upper() + s[1:] for s in sentences)
        text += f'<doc id="{d + 1}" url="x" title="Doc {d}">\nDoc {d}\n\n{paragraph}\n</doc>\n'
    corpus = root / "corpus" / "synthetic" / "wiki_00.gz"
    corpus.parent.mkdir(parents=True)
    with gzip.open(corpus, "wt", encoding="utf-8") as handle:
        handle.write(text)
    vocab = root / "vocab" / "synthetic" / "vocab.txt"
    vocab.parent.mkdir(parents=True)
    vocab.write_text("\n".join([*SPECIAL_TOKENS, ".", *sorted(w for ws in words.values() for w in ws)]) + "\n",
                     encoding="utf-8")
    return {d: set(ws) for d, ws in words.items()}


def test_prepared_blocks_carry_two_segments_within_one_document(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    words = write_corpus(tmp_path)
    spec = DataSpec(corpus="synthetic", vocab="synthetic", seq_len=32, min_block_tokens=4)
    data = prepare_pretraining_data(spec, tmp_path, tmp_path / "cache", progress=False)
    blocks = load_blocks(data)
    tokenizer = load_tokenizer(data.tokenizer_dir)
    doc_of = {tokenizer.convert_tokens_to_ids(w): d for d, ws in words.items() for w in ws}
    seps = (blocks == data.tokens.sep_id).sum(1)
    assert data.stats["two_segment_fraction"] == pytest.approx(float((seps == 2).float().mean()))
    assert 0.75 < data.stats["two_segment_fraction"] < 0.95  # 90% asked; a document's short last block has one
    for row, types in zip(blocks.tolist(), segment_ids(blocks, data.tokens.sep_id).tolist()):
        real = [t for t in row if t != data.tokens.pad_id]
        owners = {doc_of[t] for t in real if t in doc_of}
        assert len(owners) == 1, f"block mixes documents {owners}"  # so do its two segments
        assert real[-1] == data.tokens.sep_id and sum(types) == (len(real) - 1 - real.index(data.tokens.sep_id))

    # the same blocks whatever the encode chunk: the draws are seeded by the document's index
    monkeypatch.setattr(pretrain_data, "ENCODE_CHUNK_DOCS", 3)
    rebuilt = prepare_pretraining_data(spec, tmp_path, tmp_path / "cache-chunked", progress=False)
    assert torch.equal(load_blocks(rebuilt), blocks)
    monkeypatch.undo()

    single = prepare_pretraining_data(replace(spec, single_segment_prob=1.0), tmp_path, tmp_path / "cache",
                                      progress=False)
    assert single.key != data.key and single.stats["two_segment_fraction"] == 0.0
    assert int((load_blocks(single) == data.tokens.sep_id).sum()) == single.num_blocks


def test_single_segment_prob_is_checked_and_keyed() -> None:
    for bad in (-0.1, 1.5):
        with pytest.raises(ConfigError, match="single_segment_prob.*0, 1"):
            prepare_pretraining_data(DataSpec(single_segment_prob=bad), None, Path("/nonexistent"), progress=False)
    assert data_key(DataSpec(), "fp", None) != data_key(DataSpec(single_segment_prob=0.5), "fp", None)


# ---- (b) token types, derived ---------------------------------------------------------------


def test_segment_ids_by_hand() -> None:
    rows = torch.tensor([
        [CLS, 7, 8, SEP, 9, 9, SEP, PAD, PAD],  # two segments, padded
        [CLS, 7, 8, 9, SEP, PAD, PAD, PAD, PAD],  # one segment: padding after its [SEP] stays 0
        [CLS, 7, SEP, 8, 8, 8, 8, 8, SEP],  # two segments, no padding
    ])
    assert segment_ids(rows, SEP).tolist() == [
        [0, 0, 0, 0, 1, 1, 1, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 1, 1, 1, 1, 1, 1],
    ]
    assert segment_ids(rows, SEP).dtype == torch.long


def test_segment_ids_match_the_fine_tuning_tokenizer(tmp_path: Path) -> None:
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join([*SPECIAL_TOKENS, "the", "cat", "sat", "dog", "ran"]) + "\n", encoding="utf-8")
    tokenizer = load_tokenizer(tokenizer_from_vocab(vocab, tmp_path / "tok"))
    pair = tokenizer("the cat sat", "the dog ran", padding="max_length", max_length=12, return_tensors="pt")
    sep = tokenizer.sep_token_id
    assert torch.equal(segment_ids(pair["input_ids"], sep), pair["token_type_ids"] * pair["attention_mask"])
    assert int(segment_ids(pair["input_ids"], sep).sum()) == 4  # "the dog ran [SEP]"


# ---- (c) pretraining trains the segment-B embedding -----------------------------------------


def packed(single: float, n: int = 64) -> torch.Tensor:
    rows = [b for i, doc in enumerate(documents(n // 4, vocab=(5, 64)))
            for b in pack_document(doc, SEQ, CLS, SEP, 4, single_segment_prob=single, rng=random.Random(i))]
    out = torch.full((len(rows), SEQ), PAD, dtype=torch.long)
    for r, block in enumerate(rows):
        out[r, : len(block)] = torch.tensor(block)
    return out


def type_b_row_after_training(blocks: torch.Tensor, tmp: Path) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    backend = ElectraBackend(SIZE, TOK, seq_len=SEQ)
    table = backend.discriminator.embeddings.token_type_embeddings.weight
    before = table[1].detach().clone()
    plan = plan_pretraining(backend, budget_flops=3 * backend.flops_per_step(4, SEQ, "paper").total,
                            convention="paper", batch_size=4, seq_len=SEQ, warmup_fraction=0.0)
    shutil.rmtree(tmp, ignore_errors=True)
    pretrain(backend, blocks, plan, OptimSettings(lr=1e-3), pad_id=PAD, out_dir=tmp, save=lambda m, d: None,
             progress=False, resume=None)
    return before, table[1].detach()


def test_pretraining_moves_the_segment_b_embedding(tmp_path: Path) -> None:
    two = packed(0.1)
    assert (two == SEP).sum(1).eq(2).float().mean() > 0.5
    before, after = type_b_row_after_training(two, tmp_path / "two")
    assert (after - before).abs().max() > 1e-4  # Adam moves every touched entry by ~lr per step

    before, after = type_b_row_after_training(packed(1.0), tmp_path / "one")  # control: no segment B
    assert (after - before).abs().max() < 1e-5  # weight decay only: under 3 steps x lr x 0.01 x |w| < 3e-6


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_backend_feeds_token_types_to_every_encoder(name: str) -> None:
    torch.manual_seed(0)
    backend = MODELS.get(name)(SIZE, TOK, seq_len=SEQ)
    ids = packed(0.1)[:4]
    types = segment_ids(ids, SEP)
    assert int(types.sum()) > 0
    seen: list[torch.Tensor | None] = []
    encoders = [m for m in backend.modules() if type(m).__name__ == "ElectraModel"]
    hooks = [m.register_forward_pre_hook(lambda m, a, kw: seen.append(kw.get("token_type_ids")), with_kwargs=True)
             for m in encoders]
    batch = {"input_ids": ids, "attention_mask": (ids != PAD).long(), "token_type_ids": types,
             "rng": RowRandom(torch.Generator().manual_seed(1), offset=0, rows=4, total=4)}
    backend(batch).loss.backward()
    for hook in hooks:
        hook.remove()
    assert len(seen) == len(encoders) >= 1  # generator and discriminator, where there are two
    assert all(t is not None and torch.equal(t, types) for t in seen)
    grad = backend.encoder().embeddings.token_type_embeddings.weight.grad
    assert grad is not None and grad[1].abs().sum() > 0
