"""Answer quality: claims checked against the sources they cite, a judge's grades, MLflow.

The service runs with its real encoder and store; the model behind the gateway is an
httpx transport that answers as scripted, so a test can plant a sentence no source
supports. The judge is a scripted model too: these tests check what it is asked and
how its verdicts are counted. The served SmolLM2 judges real answers in
tests/integration/test_rag_agent.py.
"""

from __future__ import annotations

import httpx
import pytest

from lathe.rag_eval import evaluate_questions, log_report
from lathe.rag_judge import JudgeError, RagJudge
from tests.unit.rag.scripted import chat_reply, scripted_service

PATHS = "# Paths\n\nUse os.path.join to join path components. It inserts the separator between them.\n"
FRUIT = "# Fruit\n\nPears ripen in late summer. Apples keep for months in a cool cellar.\n"
PLANTED = "The moon is made of green cheese."


class ScriptedModel:
    def __init__(self) -> None:
        self.answer = ""

    def __call__(self, request: httpx.Request) -> httpx.Response:
        return chat_reply(self.answer)


@pytest.fixture(scope="module")
def model():
    return ScriptedModel()


@pytest.fixture(scope="module")
def client(tmp_path_factory, model):
    documents = [{"source": "paths.md", "text": PATHS}, {"source": "fruit.md", "text": FRUIT}]
    with scripted_service(tmp_path_factory.mktemp("rag-home"), model, "q", documents) as c:
        yield c


def ask(client, question: str) -> dict:
    response = client.post("/v1/rag/query", json={"collection": "q", "query": question, "top_k": 2})
    assert response.status_code == 200, response.text
    return response.json()


def test_a_planted_sentence_is_flagged_unsupported(client, model):
    model.answer = f"Use os.path.join to join path components [1]. {PLANTED}"
    answer = ask(client, "How do I join path components?")
    assert answer["sources"][0]["source"] == "paths.md"
    claims = {c["sentence"]: c for c in answer["claims"]}
    assert claims["Use os.path.join to join path components."]["supported"] is True
    assert claims[PLANTED] == {"sentence": PLANTED, "sources": [], "supported": False}
    assert answer["faithfulness"] == 0.5


def test_a_citation_to_a_chunk_without_the_claim_is_caught(client, model):
    # Both sentences are true of the corpus, but the second cites the paths page.
    model.answer = "Pears ripen in late summer [2]. Apples keep for months in a cool cellar [1]."
    answer = ask(client, "When do pears ripen?")
    by_source = {s["index"]: s["source"] for s in answer["sources"]}
    assert by_source == {1: "paths.md", 2: "fruit.md"} or by_source == {1: "fruit.md", 2: "paths.md"}
    fruit = next(n for n, s in by_source.items() if s == "fruit.md")
    model.answer = f"Pears ripen in late summer [{fruit}]. Apples keep for months in a cool cellar [{3 - fruit}]."
    answer = ask(client, "When do pears ripen?")
    assert [c["supported"] for c in answer["claims"]] == [True, False]
    assert answer["faithfulness"] == 1.0  # the answer-level check: each sentence is in some cited chunk


class ScriptedJudge:
    """Says a statement is supported when every word of it is in the sources it is shown."""

    def __init__(self, relevance: str = "5") -> None:
        self.calls: list[tuple[list[dict], list[str]]] = []
        self.relevance = relevance

    def __call__(self, messages: list[dict], choices: list[str]) -> str:
        self.calls.append((messages, choices))
        if choices == ["yes", "no"]:
            sources, _, statement = messages[1]["content"].partition("\n\nStatement: ")
            statement = statement.split("\n\n")[0]
            words = {w.strip(".").lower() for w in statement.split()}
            return "Yes." if words <= {w.strip(".").lower() for w in sources.split()} else "no"
        return self.relevance


def test_the_judge_grades_each_claim_against_what_it_cites(client, model):
    model.answer = f"Use os.path.join to join path components [1]. {PLANTED}"
    answer = ask(client, "How do I join path components?")
    judge = ScriptedJudge(relevance="4")
    grades = RagJudge(judge).grade("How do I join path components?", answer)
    assert grades == {"faithfulness": 0.5, "answer_relevance": 0.75, "unsupported": [PLANTED]}
    shown = [messages[1]["content"] for messages, choices in judge.calls if choices == ["yes", "no"]]
    assert PATHS.split("\n\n")[1].split(".")[0] in shown[0] and "Pears" not in shown[0]  # only the cited source
    assert "Pears" in shown[1]  # a claim citing nothing is judged against every source given


def test_an_unreadable_verdict_names_the_question():
    with pytest.raises(JudgeError, match=r"for 'Q\?' is not one of yes/no: 'perhaps'"):
        RagJudge(lambda messages, choices: "perhaps").supported("Q?", "statement", ["source"])


def test_eval_reports_and_logs_the_judges_figures(client, model, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)  # the experiment's artifacts go under ./mlruns

    model.answer = f"Use os.path.join to join path components [1]. {PLANTED}"
    items = [{"question": "How do I join path components?", "expected_source": "paths.md"}]

    def retrieve(question):
        return client.post("/v1/rag/retrieve", json={"collection": "q", "query": question}).json()["data"]

    report = evaluate_questions(items, retrieve, lambda q: ask(client, q), answers=1, judge=RagJudge(ScriptedJudge()))
    assert report["faithfulness"] == 0.5 and report["citation_support"] == 0.5
    assert report["judge"]["faithfulness"] == 0.5 and report["judge"]["answer_relevance"] == 1.0
    assert report["judge"]["unsupported"] == [{"question": items[0]["question"], "claim": PLANTED}]

    mlflow = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = mlflow.get_run(log_report(report, mlflow, {"collection": "q", "judge": "scripted"}))
    assert run.data.metrics["judge.faithfulness"] == 0.5 and run.data.metrics["hit_at_k"] == 1.0
    assert run.data.params["judge"] == "scripted"
    assert [a.path for a in mlflow.list_artifacts(run.info.run_id)] == ["rag_eval.json"]
