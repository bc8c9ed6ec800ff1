"""Multi-query expansion: the served model phrases a question a few other ways, each phrasing
is retrieved, and the lists are fused by reciprocal rank, as LlamaIndex's QueryFusionRetriever
does. A question worded unlike the documents ("make a copy of a file") still finds the chunk
that one of the phrasings matches ("shutil.copyfile copies a file").

The model's reply is taken line by line: numbering and quotes are stripped, and a line that
repeats the question or an earlier line, or is empty, is dropped. A small model that answers
instead of rephrasing costs a wasted lookup and nothing else, and a reply with no new
phrasing leaves the question's own results as they are.
"""

from __future__ import annotations

import re
from typing import Any

from services.rag.retrieval import Hit, reciprocal_rank_fusion

SYSTEM = "You rephrase a question for a documentation search. Reply with one rephrasing per line and nothing else."
EXAMPLE = (
    "How do I make a copy of a file?",
    ["Which function copies a file?", "copy a file to another path"],
)
_NUMBERING = re.compile(r"^\s*(?:[-*•]|\d+[.)]|rephrasing\s*\d*\s*:)\s*", re.IGNORECASE)


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
    """Reciprocal rank fusion of several retrievals (the hybrid search's own): each chunk once."""
    first: dict[str, Hit] = {}
    for ranked in lists:
        for hit in ranked:
            first.setdefault(hit.id, hit)
    return [
        Hit(hit.id, hit.text, hit.metadata, score, hit.dense_score, hit.sparse_score, hit.flags)
        for chunk, score in reciprocal_rank_fusion(lists)[:top_k]
        for hit in (first[chunk],)
    ]


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
