"""The promotion gate, as the evaluation stage names it.

The gate itself lives in ``lathe.promotion``: ``lathe models promote --if-better-than``
calls it, and the core never imports ``pipelines``. A pipeline (or a notebook) that
evaluates and then promotes imports it from here, next to the harness:

    summary = evaluate(recipe)
    result = promote_if_better(ModelRegistry(uri), "my-model", summary["model_version"], margin=0.01)
"""

from __future__ import annotations

from lathe.promotion import (
    DECISION_TAG,
    DEFAULT_METRIC,
    GATE_EXPERIMENT,
    Decision,
    GateResult,
    decide,
    eval_tag,
    higher_is_better_for,
    promote_if_better,
    read_metric,
)

__all__ = [
    "DECISION_TAG",
    "DEFAULT_METRIC",
    "GATE_EXPERIMENT",
    "Decision",
    "GateResult",
    "decide",
    "eval_tag",
    "higher_is_better_for",
    "promote_if_better",
    "read_metric",
]
