"""Extractive QA for fine-tuning: questions and contexts into windows, window logits back to answers.

Follows the ELECTRA code (google-research/electra, `finetune/qa/qa_tasks.py` and `qa_metrics.py`, settings
from `configure_finetuning.py`): the question is cut to MAX_QUERY_LENGTH tokens; a window is
`[CLS] question [SEP] context-part [SEP]`, the context parts `max_length - len(question) - 3` tokens long,
each starting DOC_STRIDE tokens after the previous; a training window whose context part lacks the
answer (and, in SQuAD 2.0, a question without one) points start and end at `[CLS]` (position 0).
Predictions keep, per window, the N_BEST_SIZE best start and end positions (`best_answers`), or with
joint prediction (the ELECTRA code's default) the BEAM_SIZE most likely starts and, for each, the
BEAM_SIZE most likely ends given that start, scored by their log-probabilities (`best_joint_answers`);
both drop spans outside the context, longer than MAX_ANSWER_LENGTH tokens, or starting at a token that
has more context in another window (`_check_is_max_context`), and take the highest start + end score
over all windows.
Characters come from the fast tokenizer's offset mapping (the ELECTRA code re-aligns WordPiece text
to whitespace tokens instead; offsets give the same characters without that heuristic).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

MAX_QUERY_LENGTH = 64  # configure_finetuning.py: max_query_length
DOC_STRIDE = 128  # doc_stride
N_BEST_SIZE = 20  # n_best_size
MAX_ANSWER_LENGTH = 30  # max_answer_length
ANSWERABLE_WEIGHT = 0.5  # answerable_weight (SQuAD 2.0's answerable classifier loss)
JOINT_PREDICTION = True  # joint_prediction: the end is predicted given the start (bench.train.finetune.SpanHead)
BEAM_SIZE = 20  # beam_size: starts kept, and ends kept per start, when decoding a joint prediction


@dataclass
class Window:
    """One model input: ids, which question it belongs to, and where its context tokens sit."""

    input_ids: list[int]
    token_type_ids: list[int]
    example: int  # index of the question in its split
    context_start: int  # position of the first context token in input_ids
    offsets: list[tuple[int, int]]  # character span in the context of each context token of this window
    max_context: list[bool]  # per context token: is this the window where it has the most context?
    start_position: int = 0  # training target (0 = [CLS]: no answer in this window)
    end_position: int = 0
    is_impossible: bool = False
    features: dict[str, Any] = field(default_factory=dict)

    def as_feature(self, index: int) -> dict[str, Any]:
        n = len(self.input_ids)
        mask = [0] * n
        mask[0] = 1  # [CLS]: the no-answer position
        for i in range(len(self.offsets)):
            mask[self.context_start + i] = 1
        return {"input_ids": self.input_ids, "token_type_ids": self.token_type_ids, "context_mask": mask,
                "start_positions": self.start_position, "end_positions": self.end_position,
                "is_impossible": int(self.is_impossible), "index": index}


def answer_token_span(offsets: Sequence[tuple[int, int]], start_char: int, end_char: int) -> tuple[int, int] | None:
    """(first, last) context token covering the characters [start_char, end_char); None if none does."""
    first = next((i for i, (s, e) in enumerate(offsets) if e > start_char), None)
    last = next((i for i in range(len(offsets) - 1, -1, -1) if offsets[i][0] < end_char), None)
    if first is None or last is None or last < first:
        return None
    return first, last


def _max_context(spans: list[tuple[int, int]], position: int) -> int:
    """ELECTRA's _check_is_max_context: the window where `position` has the most context on its shorter side."""
    best, best_index = None, -1
    for index, (start, length) in enumerate(spans):
        end = start + length - 1
        if start <= position <= end:
            score = min(position - start, end - position) + 0.01 * length
            if best is None or score > best:
                best, best_index = score, index
    return best_index


def make_windows(tokenizer: Any, questions: Sequence[str], contexts: Sequence[str],
                 answers: Sequence[dict[str, list]] | None, max_length: int, *, doc_stride: int = DOC_STRIDE,
                 max_query_length: int = MAX_QUERY_LENGTH) -> tuple[list[Window], int]:
    """Windows of every question (`answers` given: training targets from each question's first answer).
    Returns (windows, skipped): a training question whose answer maps to no token is skipped, as the
    ELECTRA code skips answers it cannot find in the document."""
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    q_ids = tokenizer(list(questions), add_special_tokens=False)["input_ids"]
    c_enc = tokenizer(list(contexts), add_special_tokens=False, return_offsets_mapping=True)
    windows: list[Window] = []
    skipped = 0
    for k, (question, ids, offsets) in enumerate(zip(q_ids, c_enc["input_ids"], c_enc["offset_mapping"])):
        question = question[:max_query_length]
        room = max_length - len(question) - 3
        if room < 1:
            raise ValueError(f"max_length = {max_length} leaves no room for the context after a "
                             f"{len(question)}-token question")
        target = None
        impossible = False
        if answers is not None:
            texts, starts = answers[k]["text"], answers[k]["answer_start"]
            if not texts:
                impossible = True
            else:
                target = answer_token_span(offsets, starts[0], starts[0] + len(texts[0]))
                if target is None:
                    skipped += 1
                    continue
        spans: list[tuple[int, int]] = []
        start = 0
        while True:
            length = min(len(ids) - start, room)
            spans.append((start, length))
            if start + length >= len(ids):
                break
            start += min(length, doc_stride)
        context_start = len(question) + 2
        for index, (start, length) in enumerate(spans):
            input_ids = [cls_id, *question, sep_id, *ids[start:start + length], sep_id]
            types = [0] * (len(question) + 2) + [1] * (length + 1)
            w = Window(input_ids, types, k, context_start, [tuple(o) for o in offsets[start:start + length]],
                       [_max_context(spans, start + i) == index for i in range(length)], is_impossible=impossible)
            if target is not None and start <= target[0] and target[1] <= start + length - 1:
                w.start_position = target[0] - start + context_start
                w.end_position = target[1] - start + context_start
            windows.append(w)
    return windows, skipped


Candidate = tuple[int, int, float]  # (start, end) positions in a window's input ids, and their score


def best_answers(windows: Sequence[Window], start_logits: Sequence[np.ndarray], end_logits: Sequence[np.ndarray],
                 contexts: Sequence[str], *, answerable_logits: Sequence[float] | None = None,
                 n_best: int = N_BEST_SIZE, max_answer_length: int = MAX_ANSWER_LENGTH,
                 positions: list[int] | None = None) -> tuple[list[str], list[float] | None]:
    """(answer text per question, no-answer score per question or None) from independent start and end
    logits: window i's are start_logits[i] / end_logits[i] (over its input positions), and each pair of its
    `n_best` best context starts and ends is a candidate scored start + end logit. The no-answer score of
    a question is the minimum of its windows' answerable logits, as the ELECTRA code's score_null.
    `positions`, when given, receives each answer's first character in its context (-1: none)."""
    def candidates(w: Window, s_log: np.ndarray, e_log: np.ndarray) -> list[Candidate]:
        lo, hi = w.context_start, w.context_start + len(w.offsets)
        s_ctx, e_ctx = np.asarray(s_log[lo:hi], dtype=np.float64), np.asarray(e_log[lo:hi], dtype=np.float64)
        starts = np.argsort(-s_ctx, kind="stable")[:n_best]
        ends = np.argsort(-e_ctx, kind="stable")[:n_best]
        return [(lo + int(i), lo + int(j), float(s_ctx[i] + e_ctx[j])) for i in starts for j in ends]

    per_window = [candidates(w, s, e) for w, s, e in zip(windows, start_logits, end_logits)]
    return _aggregate(windows, per_window, contexts, answerable_logits, max_answer_length, positions)


def best_joint_answers(windows: Sequence[Window], start_top_log_probs: Sequence[np.ndarray],
                       start_top_index: Sequence[np.ndarray], end_top_log_probs: Sequence[np.ndarray],
                       end_top_index: Sequence[np.ndarray], contexts: Sequence[str], *,
                       answerable_logits: Sequence[float] | None = None, max_answer_length: int = MAX_ANSWER_LENGTH,
                       positions: list[int] | None = None) -> tuple[list[str], list[float] | None]:
    """`best_answers` for a joint prediction (the ELECTRA code's write_predictions with joint_prediction):
    window i's candidates are its beam starts start_top_index[i][a] (log-probability start_top_log_probs[i][a])
    with the ends end_top_index[i][a][b] predicted given that start (end_top_log_probs[i][a][b]), scored
    by the sum of the two log-probabilities."""
    per_window = [[(int(si), int(ei), float(slp) + float(elp))
                   for si, slp, e_idx, e_lp in zip(s_index, s_lp, ends_index, ends_lp)
                   for ei, elp in zip(e_idx, e_lp)]
                  for s_lp, s_index, ends_lp, ends_index in zip(start_top_log_probs, start_top_index,
                                                                end_top_log_probs, end_top_index)]
    return _aggregate(windows, per_window, contexts, answerable_logits, max_answer_length, positions)


def _aggregate(windows: Sequence[Window], per_window: Sequence[Sequence[Candidate]], contexts: Sequence[str],
               answerable_logits: Sequence[float] | None, max_answer_length: int,
               positions: list[int] | None) -> tuple[list[str], list[float] | None]:
    """The best valid candidate of each question over all its windows, and its no-answer score."""
    best: dict[int, tuple[float, str, int]] = {}
    null: dict[int, float] = {}
    for k, (w, cands) in enumerate(zip(windows, per_window)):
        if answerable_logits is not None:
            null[w.example] = min(null.get(w.example, float("inf")), float(answerable_logits[k]))
        lo, n = w.context_start, len(w.offsets)
        for start, end, score in cands:
            i, j = start - lo, end - lo  # context token indices
            if not (0 <= i < n and 0 <= j < n) or not w.max_context[i] or j < i or j - i + 1 > max_answer_length:
                continue
            if w.example not in best or score > best[w.example][0]:
                best[w.example] = (score, contexts[w.example][w.offsets[i][0]:w.offsets[j][1]], w.offsets[i][0])
    texts = [best.get(k, (0.0, "", -1))[1] for k in range(len(contexts))]
    if positions is not None:
        positions[:] = [best.get(k, (0.0, "", -1))[2] for k in range(len(contexts))]
    scores = [null.get(k, 0.0) for k in range(len(contexts))] if answerable_logits is not None else None
    return texts, scores
