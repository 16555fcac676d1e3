"""Entity-level precision, recall and F1 for BIO-tagged sequences, as CoNLL's `conlleval` and
seqeval's default mode define them (computed here: no seqeval dependency).

An entity is a maximal chunk of tags of one type: it starts at `B-X`, or at an `I-X` that follows
`O` or another type (conlleval's lenient reading of IOB), and ends where the next tag does not
continue it. A predicted entity counts as correct only when a gold entity has exactly the same
start, end and type: a partial overlap is one false positive and one false negative. Scores are
micro-averaged over all entities of all sentences; with no predicted (or no gold) entity the
undefined precision (recall) is 0, as seqeval reports it.
"""

from __future__ import annotations

from typing import Iterable, Sequence


def _split(tag: str) -> tuple[str, str]:
    """('B', 'person') for 'B-person'; ('O', '') for 'O'; a tag without a prefix is its own type."""
    if tag in ("O", "", None):
        return "O", ""
    prefix, dash, kind = tag.partition("-")
    if dash and prefix in ("B", "I", "E", "S"):
        return prefix, kind
    return "I", tag  # conlleval: a bare type continues (or starts) a chunk of that type


def _end_of_chunk(prev: str, prev_type: str, tag: str, type_: str) -> bool:
    return (prev in ("E", "S")
            or (prev in ("B", "I") and tag in ("B", "S", "O"))
            or (prev != "O" and prev_type != type_))


def _start_of_chunk(prev: str, prev_type: str, tag: str, type_: str) -> bool:
    return (tag in ("B", "S")
            or (prev in ("E", "S", "O") and tag in ("I", "E"))
            or (tag != "O" and prev_type != type_))


def entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The entities of one sentence as (type, first index, last index), in order."""
    out: list[tuple[str, int, int]] = []
    prev, prev_type, start = "O", "", None
    for i, tag in enumerate([*tags, "O"]):  # a final O closes an open chunk
        cur, type_ = _split(tag)
        if start is not None and _end_of_chunk(prev, prev_type, cur, type_):
            out.append((prev_type, start, i - 1))
            start = None
        if _start_of_chunk(prev, prev_type, cur, type_):
            start = i
        prev, prev_type = cur, type_
    return out


def entity_scores(predictions: Iterable[Sequence[str]], references: Iterable[Sequence[str]]) -> dict[str, float]:
    """{"entity_f1", "entity_precision", "entity_recall"} (fractions, 0-1) over sentences of tag names."""
    n_pred = n_gold = n_correct = 0
    for pred, gold in zip(predictions, references, strict=True):
        if len(pred) != len(gold):
            raise ValueError(f"a predicted sentence has {len(pred)} tags where its reference has {len(gold)}")
        p, g = set(entities(pred)), set(entities(gold))
        n_pred, n_gold, n_correct = n_pred + len(p), n_gold + len(g), n_correct + len(p & g)
    precision = n_correct / n_pred if n_pred else 0.0
    recall = n_correct / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"entity_f1": f1, "entity_precision": precision, "entity_recall": recall}


ENTITY_METRICS = ("entity_f1", "entity_precision", "entity_recall")
