"""Scores: SQuAD's exact match and token F1 on answers, whether an answer states a fact, perplexity.

The answer metrics follow the official SQuAD v1.1 script: both strings are normalised
(lower case, no punctuation, no articles, single spaces) before they are compared, and
F1 counts shared tokens as a multiset. Perplexity is exp of the mean negative
log-likelihood over every predicted token, in non-overlapping windows of ``seq_len``.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str | Sequence[str]) -> float:
    """1.0 when the normalised prediction equals a normalised gold answer (any of several)."""
    golds = [gold] if isinstance(gold, str) else list(gold)
    return max((float(normalize_answer(prediction) == normalize_answer(g)) for g in golds), default=0.0)


def contains_answer(prediction: str, gold: str | Sequence[str]) -> float:
    """1.0 when a normalised gold answer appears, as whole words, in the normalised prediction.

    For free-form chat answers to factual questions ("The capital of France is Paris."),
    where exact match is too strict and token F1 rewards terseness.
    """
    golds = [gold] if isinstance(gold, str) else list(gold)
    said = f" {_words(prediction)} "
    return max((float(f" {_words(g)} " in said) for g in golds if _words(g)), default=0.0)


def _words(text: str) -> str:
    """Lower case, punctuation as spaces (so "100.0 degrees" holds the word "100"), no articles."""
    text = "".join(" " if ch in _PUNCTUATION else ch for ch in text.lower())
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(prediction: str, gold: str | Sequence[str]) -> float:
    """Harmonic mean of token precision and recall against the best-matching gold answer."""
    golds = [gold] if isinstance(gold, str) else list(gold)
    return max((_f1(prediction, g) for g in golds), default=0.0)


def _f1(prediction: str, gold: str) -> float:
    predicted = normalize_answer(prediction).split()
    expected = normalize_answer(gold).split()
    if not predicted or not expected:
        return float(predicted == expected)  # both empty: a match; one empty: nothing shared
    shared = sum((Counter(predicted) & Counter(expected)).values())
    if shared == 0:
        return 0.0
    precision = shared / len(predicted)
    recall = shared / len(expected)
    return 2 * precision * recall / (precision + recall)


def perplexity(
    model: Any,
    tokenizer: Any,
    texts: Iterable[str],
    seq_len: int,
    on_document: Callable[[], None] | None = None,
) -> tuple[float, int]:
    """``(perplexity, predicted tokens)`` of ``model`` on ``texts``.

    Each document is tokenised on its own and cut into non-overlapping windows of at most
    ``seq_len`` tokens; a window of n tokens predicts n - 1 of them. Windows do not see
    the previous window (no sliding context), which is what the number is comparable to
    across runs of the same recipe, not to published sliding-window figures.
    """
    import torch

    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    window = min(seq_len, limit) if limit else seq_len
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total_nll = 0.0
    total_tokens = 0
    try:
        with torch.no_grad():
            for text in texts:
                ids = tokenizer(text)["input_ids"]
                for start in range(0, len(ids), window):
                    chunk = ids[start : start + window]
                    if len(chunk) < 2:
                        continue
                    input_ids = torch.tensor([chunk], device=device)
                    loss = model(input_ids=input_ids, labels=input_ids).loss  # mean over len(chunk) - 1
                    total_nll += float(loss) * (len(chunk) - 1)
                    total_tokens += len(chunk) - 1
                if on_document is not None:
                    on_document()
    finally:
        model.train(was_training)
    if total_tokens == 0:
        return math.nan, 0
    return math.exp(total_nll / total_tokens), total_tokens
