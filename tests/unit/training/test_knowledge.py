"""The no-forgetting suite: general questions the base model answers, scored by whether an
answer states the fact, and a candidate that forgot them refused by the release policy."""

from __future__ import annotations

import pytest
import yaml

from lathe.gate_policy import load_policy
from lathe.promotion import promote_if_better
from pipelines.evaluate.config import EvaluateRecipe
from pipelines.evaluate.inputs import load_questions
from pipelines.evaluate.metrics import contains_answer
from pipelines.evaluate.sections import SUITES
from pipelines.stagekit.recipes import load_recipe

SUITE = str(SUITES / "knowledge-v1.jsonl")
POLICY = SUITES.parent / "policies" / "release.yaml"


def test_an_answer_states_the_fact_as_whole_words():
    assert contains_answer("The capital of France is Paris.", ["Paris"]) == 1.0
    assert contains_answer("It is approximately 300,000 km/s", ["300,000", "299,792"]) == 1.0
    assert contains_answer("approximately 100.0 degrees Celsius", ["100"]) == 1.0  # a decimal point splits words
    assert contains_answer("1000 degrees", ["100"]) == 0.0
    assert contains_answer("The capital of India is New Delhi.", ["New Delhi", "Delhi"]) == 1.0
    assert contains_answer("Gold is used in August coins", ["Au"]) == 0.0  # not inside another word
    assert contains_answer("Parisian food", "Paris") == 0.0
    assert contains_answer("anything", [""]) == 0.0  # an empty reference matches nothing


def test_the_shipped_suite_is_well_formed():
    questions = load_questions(SUITE, 1000, "knowledge.questions")
    assert len(questions) >= 30
    assert len({q["question"] for q in questions}) == len(questions)
    assert all(q["answer"] for q in questions)


def knows(questions: list[str]):
    """A server that answers these of the suite's questions, and shrugs at the rest."""
    answers = {q["question"]: q["answer"][0] for q in load_questions(SUITE, 1000, "knowledge.questions")}

    def respond(body: dict) -> tuple[str, dict]:
        assert body["messages"][0]["role"] == "user"  # asked as a user asks: no system prompt
        question = body["messages"][-1]["content"]
        return (f"It is {answers[question]}." if question in questions else "I am not sure."), {}

    return respond


def evaluate_knowledge(registry, url: str, model: str, tmp_path):
    from pipelines.evaluate.harness import evaluate

    path = tmp_path / f"{model.replace('/', '-')}.yaml"
    path.write_text(yaml.safe_dump({
        "kind": "evaluate", "name": "knows", "model": model,
        "perplexity": {"enabled": False}, "task": {"enabled": False, "endpoint": {"base_url": url}},
        "knowledge": {"enabled": True},  # the shipped suite
    }))  # fmt: skip
    return evaluate(load_recipe(EvaluateRecipe, path), recipe_path=path)


def test_a_candidate_that_forgot_is_refused_by_the_release_policy(registry, folder, chat_server, tmp_path):
    suite = [q["question"] for q in load_questions(SUITE, 1000, "knowledge.questions")]
    registry.register_folder(folder, "m", alias="champion")
    registry.register_folder(folder, "m")
    registry.register_folder(folder, "m")
    everything = evaluate_knowledge(registry, chat_server(knows(suite)), "models:/m/1", tmp_path)
    assert everything["knowledge_accuracy"] == 1.0 and everything["knowledge_questions"] == len(suite)
    forgot = evaluate_knowledge(registry, chat_server(knows(suite[: len(suite) * 3 // 4])), "models:/m/2", tmp_path)
    assert forgot["knowledge_accuracy"] == pytest.approx((len(suite) * 3 // 4) / len(suite))
    nearly = evaluate_knowledge(registry, chat_server(knows(suite[1:])), "models:/m/3", tmp_path)
    for version, task_f1 in (("1", 0.30), ("2", 0.50), ("3", 0.35)):  # both candidates gained on the task
        registry.set_version_tag("m", version, "lathe.eval.token_f1", str(task_f1))
        registry.set_version_tag("m", version, "lathe.eval.perplexity", "10")
        registry.set_version_tag("m", version, "lathe.eval.exact_match", "0.1")
    policy = load_policy(POLICY)
    refused = promote_if_better(registry, "m", "2", policy=policy)
    assert refused.outcome == "refused" and refused.decision.metric == "eval_knowledge_accuracy"
    assert nearly["knowledge_accuracy"] >= 0.95
    assert promote_if_better(registry, "m", "3", policy=policy).outcome == "promoted"
