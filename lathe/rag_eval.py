"""Score retrieval and answers on a question set: hit@k, MRR, faithfulness and relevance.

A question set is JSON Lines, one object per question:

    {"question": "What does os.path.join return?", "expected_source": "library/os.path.rst.txt"}

``expected_source`` matches a chunk whose source ends with it (paths differ between
machines); ``expected_doc_id`` matches a document id exactly; ``expected_text``
matches a chunk containing that text. A question may give several; any one counts.

Answers are scored by the RAG service's own checks (``faithfulness``: answer sentences
found in a cited chunk; ``citation_support``: claims that a source they cite contains)
and, with a judge (``lathe.rag_judge``), by a model: faithfulness and answer relevance.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lathe.errors import InvalidRequestError
from lathe.rag_judge import RagJudge, citation_support

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
    judge: RagJudge | None = None,
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
    graded = _grade_answers(items[: answers if answer else 0], answer, judge)
    n = len(items)
    return {
        **graded,
        "questions": n,
        "k": k,
        "hit_at_k": hits_at_k / n,
        "mrr": reciprocal / n,
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


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _grade_answers(items: list[dict[str, Any]], answer, judge: RagJudge | None) -> dict[str, Any]:
    lexical, support, judged, relevance, unsupported = [], [], [], [], []
    unknown = 0
    for item in items:
        result = answer(item["question"])
        if not result.get("grounded"):
            unknown += 1
            continue
        lexical.append(float(result.get("faithfulness") or 0.0))
        share = citation_support(result)
        if share is not None:
            support.append(share)
        if judge is not None:
            grades = judge.grade(item["question"], result)
            judged.append(grades["faithfulness"])
            relevance.append(grades["answer_relevance"])
            unsupported += [{"question": item["question"], "claim": c} for c in grades["unsupported"]]
    return {
        "answered": len(lexical),
        "unknown": unknown,
        "faithfulness": _mean(lexical),
        "citation_support": _mean(support),
        "judge": None
        if judge is None
        else {"faithfulness": _mean(judged), "answer_relevance": _mean(relevance), "unsupported": unsupported},
    }


EXPERIMENT = "lathe-rag-eval"


def log_report(report: dict[str, Any], client: Any, params: dict[str, Any]) -> str:
    """One MLflow run in ``lathe-rag-eval`` (``client``: an ``MlflowClient``): the figures as
    metrics, the whole report as JSON; returns the run's id."""
    import time

    from mlflow.entities import Metric, Param

    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
    run = client.create_run(
        experiment_id, run_name=f"rag-eval-{params.get('collection')}", tags={"lathe.stage": "rag-eval"}
    )
    figures = {"hit_at_k": report["hit_at_k"], "mrr": report["mrr"], "faithfulness": report["faithfulness"],
               "citation_support": report["citation_support"]}  # fmt: skip
    for kind, part in report["by_kind"].items():
        figures[f"{kind}.hit_at_k"], figures[f"{kind}.mrr"] = part["hit_at_k"], part["mrr"]
    for name, value in (report.get("judge") or {}).items():
        if name != "unsupported":
            figures[f"judge.{name}"] = value
    now = int(time.time() * 1000)
    metrics = [Metric(key, float(value), now, 0) for key, value in figures.items() if value is not None]
    client.log_batch(run.info.run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in params.items()])
    client.log_dict(run.info.run_id, report, "rag_eval.json")
    client.set_terminated(run.info.run_id, status="FINISHED")
    return run.info.run_id
