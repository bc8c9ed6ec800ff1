"""lm-eval through the OpenAI API: Lathe's shipped tasks against a real server on loopback,
the figures logged and tagged, and bad task names refused before anything runs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from lathe.errors import ConfigError
from pipelines.evaluate.chat import Endpoint
from pipelines.evaluate.config import EvaluateRecipe
from pipelines.evaluate.lmeval import check_tasks, model_args
from pipelines.evaluate.sections import SUITES, LmEvalSection
from pipelines.stagekit.recipes import load_recipe


def suite(name: str) -> list[dict]:
    return [json.loads(line) for line in (SUITES / name).read_text().splitlines() if line.strip()]


def test_unknown_tasks_are_refused_naming_lathes_own():
    check_tasks(LmEvalSection(tasks=["lathe_knowledge", "lathe_docs_mc", "lathe_docs_mc_gen"]))
    with pytest.raises(ConfigError, match=re.escape("lm_eval.tasks: no task lathe_nope (Lathe's: lathe_docs_mc,")):
        check_tasks(LmEvalSection(tasks=["lathe_nope"]))


def test_chat_and_completions_are_asked_as_their_apis_need():
    endpoint = Endpoint("http://gw/v1", "m", "lk-secret")
    model, args = model_args(LmEvalSection(), endpoint, None)
    assert model == "local-chat-completions" and args["base_url"] == "http://gw/v1/chat/completions"
    assert args["header"] == {"Authorization": "Bearer lk-secret"} and args["tokenized_requests"] is False
    model, args = model_args(LmEvalSection(api="completions"), endpoint, Path("/weights"))
    assert (model, args["tokenizer"], args["base_url"]) == ("local-completions", "/weights", "http://gw/v1/completions")
    with pytest.raises(ConfigError, match="needs the model's tokenizer"):
        model_args(LmEvalSection(api="completions"), endpoint, None)


def respond(body: dict) -> tuple[str, dict]:
    """Knows the knowledge suite's answers and the documentation quiz's letters, except one of each."""
    asked = body["messages"][-1]["content"]
    knowledge = {q["question"]: q["answer"][0] for q in suite("knowledge-v1.jsonl")[1:]}
    if asked in knowledge:
        return f"That is {knowledge[asked]}.", {}
    for item in suite("docs-mc-v1.jsonl")[1:]:
        if asked.startswith(item["question"]):
            return f"{'ABCD'[item['label']]}. {item['choices'][item['label']]}", {}
    return "I do not know.", {}


def test_shipped_tasks_score_a_served_model_and_land_in_mlflow(registry, folder, chat_server, tmp_path):
    import mlflow

    from pipelines.evaluate.harness import evaluate

    registry.register_folder(folder, "m", alias="champion")
    url = chat_server(respond)
    path = tmp_path / "lm.yaml"
    path.write_text(yaml.safe_dump({
        "kind": "evaluate", "name": "lm", "model": "models:/m/1",
        "perplexity": {"enabled": False}, "task": {"enabled": False, "endpoint": {"base_url": url, "model": "m"}},
        "lm_eval": {"enabled": True, "tasks": ["lathe_knowledge", "lathe_docs_mc_gen"]},
    }))  # fmt: skip
    summary = evaluate(load_recipe(EvaluateRecipe, path), recipe_path=path)

    known, quiz = len(suite("knowledge-v1.jsonl")), len(suite("docs-mc-v1.jsonl"))
    assert summary["metrics"]["eval_lmeval_lathe_knowledge_contains"] == pytest.approx((known - 1) / known)
    assert summary["metrics"]["eval_lmeval_lathe_docs_mc_gen_exact_match"] == pytest.approx((quiz - 1) / quiz)
    tags = registry.get_version("m", "1").tags
    assert float(tags["lathe.eval.lmeval_lathe_knowledge_contains"]) == pytest.approx((known - 1) / known, rel=1e-5)
    run = mlflow.get_run(summary["mlflow_run_id"])
    assert run.data.params["lm_eval_version"] == "0.4.13" and run.data.params["lm_eval_api"] == "chat"
    local = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="eval/lm_eval/lathe_knowledge.json"
    )
    table = json.loads(Path(local).read_text())
    rows = [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]
    assert len(rows) == known and sum(r["contains"] for r in rows) == known - 1
