"""Score retrieval and answers on a question set: hit@k, MRR and faithfulness.

A question set is JSON Lines, one object per question:

    {"question": "What does os.path.join return?", "expected_source": "library/os.path.rst.txt"}

``expected_source`` matches a chunk whose source ends with it (paths differ between
machines); ``expected_doc_id`` matches a document id exactly; ``expected_text``
matches a chunk containing that text. A question may give several; any one counts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lathe.errors import InvalidRequestError

_EXPECT = ("expected_source", "expected_doc_id", "expected_text")


def load_questions(path: Path) -> list[dict[str, Any]]:
    items = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise InvalidRequestError(f"{path}:{number}: not JSON ({exc})", param="questions") from None
        if not isinstance(item, dict) or not str(item.get("question", "")).strip():
            raise InvalidRequestError(f"{path}:{number}: needs a non-empty 'question'", param="questions")
        if not any(item.get(k) for k in _EXPECT):
            raise InvalidRequestError(f"{path}:{number}: needs one of {', '.join(_EXPECT)}", param="questions")
        items.append(item)
    if not items:
        raise InvalidRequestError(f"{path} has no questions", param="questions")
    return items


def is_relevant(hit: dict[str, Any], item: dict[str, Any]) -> bool:
    source = str(hit.get("source") or "")
    if item.get("expected_source") and source.endswith(str(item["expected_source"])):
        return True
    if item.get("expected_doc_id") and hit.get("doc_id") == item["expected_doc_id"]:
        return True
    return bool(item.get("expected_text")) and str(item["expected_text"]) in str(hit.get("text") or "")


def first_relevant_rank(hits: list[dict[str, Any]], item: dict[str, Any]) -> int | None:
    for rank, hit in enumerate(hits, start=1):
        if is_relevant(hit, item):
            return rank
    return None


def evaluate_questions(
    items: list[dict[str, Any]],
    retrieve: Callable[[str], list[dict[str, Any]]],
    answer: Callable[[str], dict[str, Any]] | None = None,
    *,
    k: int = 5,
    answers: int = 0,
) -> dict[str, Any]:
    hits_at_k = 0
    reciprocal = 0.0
    misses = []
    kinds: dict[str, list[float]] = {}  # kind -> reciprocal ranks (0 for a miss)
    for item in items:
        rank = first_relevant_rank(retrieve(item["question"])[:k], item)
        kinds.setdefault(str(item.get("kind") or "all"), []).append(1.0 / rank if rank else 0.0)
        if rank is not None:
            hits_at_k += 1
            reciprocal += 1.0 / rank
        else:
            expected = next(item[key] for key in _EXPECT if item.get(key))
            misses.append({"question": item["question"], "expected": expected})
    scores = []
    unknown = 0
    for item in items[: answers if answer else 0]:
        result = answer(item["question"])
        if result.get("grounded"):
            scores.append(float(result.get("faithfulness") or 0.0))
        else:
            unknown += 1
    n = len(items)
    return {
        "questions": n,
        "k": k,
        "hit_at_k": hits_at_k / n,
        "mrr": reciprocal / n,
        "answered": len(scores),
        "unknown": unknown,
        "faithfulness": round(sum(scores) / len(scores), 4) if scores else None,
        "misses": misses,
        # Per ``kind`` of question when the file names kinds (the demo set: api, user).
        "by_kind": {
            kind: {
                "questions": len(ranks),
                "hit_at_k": sum(r > 0 for r in ranks) / len(ranks),
                "mrr": sum(ranks) / len(ranks),
            }
            for kind, ranks in sorted(kinds.items())
        }
        if len(kinds) > 1 or "all" not in kinds
        else {},
    }
