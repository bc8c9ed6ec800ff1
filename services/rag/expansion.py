"""Multi-query expansion: the served model phrases a question a few other ways, each phrasing
is retrieved, and the lists are fused by reciprocal rank, as LlamaIndex's QueryFusionRetriever
does. A question worded unlike the documents ("make a copy of a file") still finds the chunk
that one of the phrasings matches ("shutil.copyfile copies a file").

The model's reply is taken line by line: numbering and quotes are stripped, and a line that
repeats the question or an earlier line, or is empty, is dropped. A small model that answers
instead of rephrasing costs a wasted lookup and nothing else: the original question is always
retrieved first and ranks highest on ties.
"""

from __future__ import annotations

import re
from typing import Any

from services.rag.retrieval import Hit

SYSTEM = "You rephrase a question for a documentation search. Reply with one rephrasing per line and nothing else."
EXAMPLE = (
    "How do I make a copy of a file?",
    ["Which function copies a file?", "copy a file to another path"],
)
_NUMBERING = re.compile(r"^\s*(?:[-*•]|\d+[.)]|rephrasing\s*\d*\s*:)\s*", re.IGNORECASE)
RRF_K = 60


def expansion_messages(question: str, n: int) -> list[dict[str, str]]:
    """A few-shot prompt asking for ``n`` rephrasings of ``question``, one per line."""
    asked, shown = EXAMPLE
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Give {len(shown)} rephrasings of: {asked}"},
        {"role": "assistant", "content": "\n".join(shown)},
        {"role": "user", "content": f"Give {n} rephrasings of: {question}"},
    ]


def parse_variants(reply: str, question: str, n: int) -> list[str]:
    """At most ``n`` distinct rephrasings from the model's reply, the question itself left out."""
    seen = {_key(question)}
    variants = []
    for line in reply.splitlines():
        text = _NUMBERING.sub("", line).strip().strip("\"'").strip()
        if len(text) < 3 or _key(text) in seen:
            continue
        seen.add(_key(text))
        variants.append(text)
        if len(variants) == n:
            break
    return variants


def fuse_hits(lists: list[list[Hit]], top_k: int) -> list[Hit]:
    """Reciprocal rank fusion of several retrievals: each chunk once, scored by its ranks."""
    scores: dict[str, float] = {}
    first: dict[str, Hit] = {}
    for ranked in lists:
        for rank, hit in enumerate(ranked, start=1):
            scores[hit.id] = scores.get(hit.id, 0.0) + 1.0 / (RRF_K + rank)
            first.setdefault(hit.id, hit)
    order = sorted(scores, key=lambda chunk: -scores[chunk])  # stable: the original question's order wins ties
    fused = []
    for chunk in order[:top_k]:
        hit = first[chunk]
        fused.append(Hit(hit.id, hit.text, hit.metadata, scores[chunk], hit.dense_score, hit.sparse_score, hit.flags))
    return fused


def fuse_info(infos: list[dict[str, Any]], variants: list[str]) -> dict[str, Any]:
    """The first retrieval's info, with the best dense score of any and the phrasings used."""
    info = dict(infos[0])
    dense = [i["best_dense_score"] for i in infos if i.get("best_dense_score") is not None]
    if dense:
        info["best_dense_score"] = max(dense)
    info["expansions"] = variants
    return info


def _key(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))
