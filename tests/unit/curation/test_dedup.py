import random

import numpy as np

from pipelines.curation.dedup import MinHashParams, exact_hash, find_near_duplicates, signatures_for


def corpus_with_near_duplicates(n=1500, dups=150, seed=1):
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(8000)]
    docs = [" ".join(rng.choice(vocab) for _ in range(150)) for _ in range(n)]
    truth = {}
    for _ in range(dups):
        source = rng.randrange(n)
        words = docs[source].split()
        rate = rng.uniform(0.01, 0.10)  # edits of 1-10 % of the words
        words = [rng.choice(vocab) if rng.random() < rate else w for w in words]
        truth[len(docs)] = source
        docs.append(" ".join(words))
    return docs, truth


def test_exact_hash_ignores_case_and_spacing():
    assert exact_hash("Hello   World\n") == exact_hash("hello world")
    assert exact_hash("hello world") != exact_hash("hello worlds")


def test_near_duplicate_recall_and_precision():
    docs, truth = corpus_with_near_duplicates()
    params = MinHashParams()
    result = find_near_duplicates(signatures_for(docs, params), params)
    dropped = set(np.flatnonzero(~result.keep))
    found = sum(1 for d in truth if d in dropped)
    recall = found / len(truth)
    precision = found / len(dropped)
    assert recall >= 0.95, recall
    assert precision >= 0.98, precision
    for dup in truth:
        if dup in dropped:
            assert result.duplicate_of[dup] == truth[dup]  # the original (first seen) stays


def test_signatures_are_deterministic_and_sized():
    params = MinHashParams(bands=14, rows=8, ngram=5)
    a = signatures_for(["some text to hash with several words in it"], params)
    b = signatures_for(["some text to hash with several words in it"], params)
    assert a.shape == (1, 112) and a.dtype == np.uint32
    assert (a == b).all()
    assert params.memory_estimate_bytes(1_000_000) > 1_000_000 * 112 * 4


def test_short_and_empty_documents_do_not_break_it():
    params = MinHashParams()
    sigs = signatures_for(["", "one", "two words", "🎉🎉"], params)
    result = find_near_duplicates(sigs, params)
    assert len(result.keep) == 4
