"""Stage 6: decontamination — documents sharing a long n-gram with an evaluation set.

Word 13-grams by default (the GPT-3 paper's choice). Evaluation texts are hashed once
into a set of 64-bit n-gram hashes; a document is contaminated when any of its n-grams
is in the set. ``mode`` decides whether it is dropped or kept with a flag.
"""

from __future__ import annotations

import re
import zlib

import numpy as np

_TOKEN = re.compile(r"\w+", re.UNICODE)


def ngram_hashes(text: str, n: int) -> np.ndarray:
    tokens = _TOKEN.findall(text.lower())
    if len(tokens) < n:
        return np.zeros(0, dtype=np.uint64)
    word = np.fromiter((zlib.crc32(t.encode()) for t in tokens), dtype=np.uint64, count=len(tokens))
    combined = np.zeros(len(word) - n + 1, dtype=np.uint64)
    multiplier = np.uint64(1)
    with np.errstate(over="ignore"):
        for k in range(n):
            combined += word[k : len(word) - n + 1 + k] * multiplier
            multiplier *= np.uint64(0x100000001B3)
    return combined


def build_index(texts: list[str], n: int) -> frozenset[int]:
    index: set[int] = set()
    for text in texts:
        index.update(int(h) for h in ngram_hashes(text, n))
    return frozenset(index)


def contamination(text: str, index: frozenset[int], n: int) -> int:
    """How many of the document's n-grams appear in the evaluation sets."""
    if not index:
        return 0
    return sum(1 for h in ngram_hashes(text, n) if int(h) in index)
