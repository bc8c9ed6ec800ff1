"""Synthetic English-like articles for curation tests: random words from a fixed list, seeded."""

from __future__ import annotations

import random

WORDS = (
    "the of and to in that is was he for it with as his on be at by had are but from or have an they which one "
    "you were all we her she there would their will when who him been has more if no out so said what up its "
    "about than into them can only other time new some could these two may first then do any like my now over "
    "such our man me even most made after also did many before must through back years where much your way well "
    "river mountain lighthouse harbour journal winter summer storm village market garden bridge station library"
).split()


def article(rng: random.Random, n: int = 120) -> str:
    """Sentences of 8-16 random words until the article has at least ``n`` words."""
    sentences = []
    while sum(len(s.split()) for s in sentences) < n:
        sentences.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 16))).capitalize() + ".")
    return " ".join(sentences)
