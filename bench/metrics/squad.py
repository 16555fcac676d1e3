"""Exact match and F1 of extractive QA, as the official SQuAD evaluation scripts compute them
(`evaluate-v1.1.py`; `evaluate-v2.0.py` as the ELECTRA code's `finetune/qa/squad_official_eval.py`).

Answers are normalised (lowercase, punctuation removed, the articles a/an/the removed, whitespace
collapsed); a question scores the maximum over its reference answers. SQuAD 2.0: a question without
a reference answer has the one answer "" (right only when the prediction is ""), and a question whose
no-answer score exceeds the threshold is predicted "" (the ELECTRA code's answerable classifier and
`qa_na_threshold`); `best_*` are the scores at the best threshold on these same questions, as the v2
script's find_best_thresh reports them. Values are fractions (0-1), not the scripts' percentages.
"""

from __future__ import annotations

import collections
import re
import string
from typing import Sequence

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
# ELECTRA's configure_finetuning.py: qa_na_threshold = -2.75 ("no answer" when the answerable logit exceeds it)
NO_ANSWER_THRESHOLD = -2.75


def normalize_answer(text: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (the official scripts' order)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not gold:  # no-answer on either side: 1 if both are empty
        return float(pred == gold)
    common = collections.Counter(pred) & collections.Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def _gold(answers: Sequence[str]) -> list[str]:
    kept = [a for a in answers if normalize_answer(a)]  # the v2 script drops answers that normalise to ""
    return kept or [""]


def question_scores(prediction: str, answers: Sequence[str]) -> tuple[float, float]:
    """(exact match, F1) of one prediction: the maximum over the reference answers."""
    gold = _gold(answers)
    return max(exact_match(prediction, a) for a in gold), max(token_f1(prediction, a) for a in gold)


def squad_scores(predictions: Sequence[str], references: Sequence[Sequence[str]],
                 no_answer_scores: Sequence[float] | None = None,
                 threshold: float = NO_ANSWER_THRESHOLD) -> dict[str, float]:
    """{"f1", "exact_match"} over questions; with `no_answer_scores` (SQuAD 2.0) the thresholded scores
    plus "best_f1" and "best_exact_match" (the v2 script's best threshold)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} questions")
    n = len(references)
    if n == 0:
        return {"f1": 0.0, "exact_match": 0.0}
    raw = [question_scores(p, r) for p, r in zip(predictions, references)]
    if no_answer_scores is None:
        return {"f1": sum(f for _, f in raw) / n, "exact_match": sum(e for e, _ in raw) / n}
    has_answer = [bool(_gold(r)[0]) for r in references]
    out: dict[str, float] = {}
    for key, pick in (("exact_match", 0), ("f1", 1)):
        scores = [(float(not has) if na > threshold else s[pick])
                  for s, na, has in zip(raw, no_answer_scores, has_answer)]
        out[key] = sum(scores) / n
        out[f"best_{key}"] = _best_threshold_score([s[pick] for s in raw], predictions, no_answer_scores,
                                                   has_answer)
    return {"f1": out["f1"], "exact_match": out["exact_match"], "best_f1": out["best_f1"],
            "best_exact_match": out["best_exact_match"]}


def _best_threshold_score(scores: Sequence[float], predictions: Sequence[str], na: Sequence[float],
                          has_answer: Sequence[bool]) -> float:
    """The v2 script's find_best_thresh: start from predicting "" everywhere, then admit questions in
    order of rising no-answer score, keeping the best total."""
    current = best = float(sum(1 for h in has_answer if not h))
    for i in sorted(range(len(scores)), key=lambda k: na[k]):
        current += scores[i] if has_answer[i] else (-1.0 if predictions[i] else 0.0)
        best = max(best, current)
    return best / len(scores)


SPAN_METRICS = ("f1", "exact_match")
SPAN_METRICS_V2 = ("f1", "exact_match", "best_f1", "best_exact_match")
