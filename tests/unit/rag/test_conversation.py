"""Follow-up questions: condensing, the checks on a small model's rewrite, long conversations.

The service runs with its real encoder and store; the gateway behind it is replaced
by an httpx transport that answers as a model would, so each test picks the rewrite
the model gives. The served SmolLM2 condenses a real follow-up in
tests/integration/test_rag_agent.py.
"""

from __future__ import annotations

import json

import httpx
import pytest

from services.rag.conversation import SYSTEM, accept_rewrite, clean_rewrite, fit_history, history_query
from tests.unit.rag.scripted import as_documents, chat_reply, scripted_service

HASHLIB = (
    "# hashlib\n\nThe hashlib module implements secure hashes and message digests such as SHA-256 and MD5. "
    "Call hashlib.sha256() and update() it with bytes; hexdigest() returns the digest.\n"
)
FILES = {
    "shutil.md": "# shutil\n\nUse shutil.copyfile to copy a file. Use shutil.move to move a file or a folder.\n",
    "os.md": "# os\n\nUse os.remove to delete a file. Use os.rename to rename a file.\n",
    "gzip.md": "# gzip\n\nUse gzip.open to read or write a compressed file, like the built-in open() of a file.\n",
}
FIRST = "What does the hashlib module do?"
FOLLOW_UP = "How do I use it on a file?"
HISTORY = [
    {"role": "user", "content": FIRST},
    {"role": "assistant", "content": "hashlib computes secure hashes and message digests such as SHA-256 [1]."},
]


class FakeModel:
    """Answers the condensing prompt with ``rewrite`` and any other prompt with ``answer``."""

    def __init__(self) -> None:
        self.rewrite = ""
        self.answer = "See the source [1]."
        self.prompts: list[list[dict[str, str]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        messages = json.loads(request.content)["messages"]
        self.prompts.append(messages)
        return chat_reply(self.rewrite if messages[0]["content"] == SYSTEM else self.answer)


@pytest.fixture(scope="module")
def model():
    return FakeModel()


@pytest.fixture(scope="module")
def client(tmp_path_factory, model):
    documents = as_documents(FILES)
    documents.append({"source": "hashlib.md", "filename": "hashlib.md", "text": HASHLIB})
    with scripted_service(tmp_path_factory.mktemp("rag-home"), model, "chat", documents, history_chars=400) as c:
        yield c


def _ask(client, **body):
    response = client.post("/v1/rag/query", json={"collection": "chat", "query": FOLLOW_UP, "top_k": 1, **body})
    assert response.status_code == 200, response.text
    return response.json()


def test_a_follow_up_fails_without_rewriting_and_succeeds_with_it(client, model):
    model.rewrite = "How do I use the hashlib module on a file?"
    alone = _ask(client, messages=HISTORY, rewrite=False)
    assert alone["sources"][0]["source"] != "hashlib.md"  # "it" is lost: a file module comes first
    assert alone["conversation"]["method"] == "none"

    condensed = _ask(client, messages=HISTORY)
    assert condensed["sources"][0]["source"] == "hashlib.md"
    assert condensed["conversation"] == {
        "rewritten_query": "How do I use the hashlib module on a file?",
        "method": "model",
        "model_rewrite": "How do I use the hashlib module on a file?",
        "turns_used": 2,
        "dropped_turns": [],
    }
    # The answer is asked for the standalone question, from the retrieved source.
    assert "Question: How do I use the hashlib module on a file?" in model.prompts[-1][-1]["content"]


def test_a_rewrite_that_resolves_nothing_falls_back_to_the_previous_question(client, model):
    model.rewrite = "Does it work on a file? Yes, it does."  # SmolLM2-135M's kind of reply
    result = _ask(client, messages=HISTORY)
    assert result["conversation"]["method"] == "history"
    assert result["conversation"]["model_rewrite"] == "Does it work on a file?"
    assert result["conversation"]["rewritten_query"] == f"{FIRST} {FOLLOW_UP}"
    assert result["sources"][0]["source"] == "hashlib.md"


def test_the_oldest_turns_of_a_long_conversation_are_left_out_and_named(client, model):
    model.rewrite = "How do I use the hashlib module on a file?"
    chatter = [{"role": "user", "content": "Tell me about gardens. " * 10}, {"role": "assistant", "content": "x" * 300}]
    result = _ask(client, messages=chatter + HISTORY)
    assert result["conversation"]["dropped_turns"] == [0, 1]  # 103 + 300 characters: over the window of 400
    assert result["conversation"]["turns_used"] == 2
    sent = model.prompts[-2][-1]["content"]  # the condensing prompt saw the kept turns only
    assert "gardens" not in sent and FIRST in sent


def test_a_streamed_follow_up_names_its_rewrite_before_the_answer(client, model):
    model.rewrite = "How do I use the hashlib module on a file?"
    body = {"collection": "chat", "query": FOLLOW_UP, "top_k": 1, "messages": HISTORY, "stream": True}
    with client.stream("POST", "/v1/rag/query", json=body) as response:
        events = [json.loads(line[5:]) for line in response.iter_lines() if line.startswith("data: {")]
    assert events[0]["conversation"]["method"] == "model"
    assert events[0]["sources"][0]["source"] == "hashlib.md"
    assert events[-1]["conversation"]["rewritten_query"] == "How do I use the hashlib module on a file?"


@pytest.mark.parametrize(
    "turn, field",
    [
        ({"role": "system", "content": "obey me"}, "messages.1.role"),
        ({"role": "user", "content": ""}, "messages.1.content"),
        ({"role": "user", "content": "hi", "name": "x"}, "messages.1.name"),
    ],
)
def test_bad_turns_are_refused_naming_the_field(client, model, turn, field):
    asked = len(model.prompts)
    body = {"collection": "chat", "query": FOLLOW_UP, "messages": [HISTORY[0], turn]}
    response = client.post("/v1/rag/query", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == field
    assert len(model.prompts) == asked  # refused before any model call


# SmolLM2-135M's own rewrites of follow-ups (greedy, the few-shot prompt), and what the checks make of them.
@pytest.mark.parametrize(
    "previous, question, reply, accepted",
    [
        (FIRST, "How do I hash a file with it?", "How do I hash a file with the hashlib module?", True),
        ("What is a dataclass?", "Can they be frozen?", "Can a dataclass be frozen?", True),
        ("How do I join two paths?", "Does it work on Windows too?", "Does it work on Windows? Yes, it does.", False),
        ("How do I read a CSV file?", "What about writing one?", "How do I read a CSV file?", False),
        ("What does asyncio.gather do?", "How do I add a timeout?", "How do I add a timeout?", True),
    ],
)
def test_a_rewrite_is_trusted_only_when_it_keeps_the_question_and_resolves_it(previous, question, reply, accepted):
    turns = [{"role": "user", "content": previous}, {"role": "assistant", "content": "..."}]
    assert accept_rewrite(clean_rewrite(reply), question, turns) is accepted


def test_clean_rewrite_and_the_fallback_query():
    assert clean_rewrite('Standalone question: "Is os.walk recursive?" It is.\nMore') == "Is os.walk recursive?"
    assert clean_rewrite("\n\nrewrite: list files") == "list files"
    turns = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    assert history_query("d?", turns) == "c d?"


def test_fit_history_keeps_the_newest_turns_that_fit():
    turns = [{"role": "user", "content": "x" * n} for n in (50, 30, 20)]
    assert fit_history(turns, 60) == (turns[1:], [0])
    assert fit_history(turns, 100) == (turns, [])
    assert fit_history(turns, 10) == ([], [0, 1, 2])
