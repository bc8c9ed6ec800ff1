"""Datasets and scoring for Lathe's lm-eval tasks, read from the suites shipped beside them.

lm-eval loads this file by path (``!function lathe_tasks.…`` in the task YAMLs), so the
tasks need no dataset hub: ``lm_eval --include_path pipelines/evaluate/tasks --tasks
lathe_knowledge`` works offline, and so does the evaluation recipe's ``lm_eval`` section.
"""

from __future__ import annotations

import json

from pipelines.evaluate.sections import SUITES


def _rows(name: str) -> list[dict]:
    with open(SUITES / name, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def knowledge(**_: object) -> dict:
    """General questions the base model answers (the no-forgetting suite), for generation."""
    import datasets

    rows = [{"question": r["question"], "answers": r["answer"]} for r in _rows("knowledge-v1.jsonl")]
    return {"test": datasets.Dataset.from_list(rows)}


def docs_mc(**_: object) -> dict:
    """Multiple-choice questions on the Python documentation the demo curates."""
    import datasets

    return {"test": datasets.Dataset.from_list(_rows("docs-mc-v1.jsonl"))}


def states_the_answer(doc: dict, results: list[str]) -> dict:
    """1 when the generated answer states a reference answer as whole words (Lathe's ``contains``)."""
    from pipelines.evaluate.metrics import contains_answer

    return {"contains": contains_answer(results[0], doc["answers"])}
