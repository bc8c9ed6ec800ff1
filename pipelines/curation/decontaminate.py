"""Stage 6: decontamination — documents sharing a long n-gram with an evaluation set.

Word 13-grams by default (the GPT-3 paper's choice). Evaluation texts are hashed once
into a set of 64-bit n-gram hashes; a document is contaminated when any of its n-grams
is in the set. ``mode`` decides whether it is dropped or kept with a flag.
"""

from __future__ import annotations

import re

import numpy as np

from pipelines.curation.dedup import word_ngram_hashes

_TOKEN = re.compile(r"\w+", re.UNICODE)


def ngram_hashes(text: str, n: int) -> np.ndarray:
    return word_ngram_hashes(_TOKEN.findall(text.lower()), n, step=0x100000001B3)


def build_index(texts: list[str], n: int) -> frozenset[int]:
    index: set[int] = set()
    for text in texts:
        index.update(int(h) for h in ngram_hashes(text, n))
    return frozenset(index)


def contamination_reason(count: int, n: int) -> str:
    return f"shares {count} {n}-grams with an evaluation set"


def contamination(text: str, index: frozenset[int], n: int) -> int:
    """How many of the document's n-grams appear in the evaluation sets."""
    if not index:
        return 0
    return sum(1 for h in ngram_hashes(text, n) if int(h) in index)
