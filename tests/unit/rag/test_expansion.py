"""Multi-query expansion: a question worded unlike the documents is found through the model's
rephrasings, fused with the question's own results; the model's reply is cleaned line by line.

The model's replies are scripted (tests/unit/rag/scripted.py), so each test picks the
rephrasings it gives.
"""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi.testclient import TestClient

from services.rag.app import create_app
from services.rag.expansion import SYSTEM, fuse_hits, parse_variants
from services.rag.retrieval import Hit
from services.rag.settings import RagServiceSettings
from tests.unit.rag.scripted import as_documents, chat_reply, scripted_service

FILES = {
    "zipfile.md": "# zipfile\n\nzipfile.ZipFile reads and writes ZIP archives; extractall() unpacks every member.\n",
    "shutil.md": "# shutil\n\nshutil.copyfile copies the contents of one file to another path.\n",
    "os.md": "# os\n\nos.remove deletes a file. os.rename renames a file.\n",
}
QUESTION = "bundle many files into one"


class FakeModel:
    """Answers the expansion prompt with ``variants`` and any other prompt with an answer."""

    def __init__(self) -> None:
        self.variants = ""
        self.expansion_prompts: list[list[dict]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        messages = json.loads(request.content)["messages"]
        if messages[0]["content"] == SYSTEM:
            self.expansion_prompts.append(messages)
            return chat_reply(self.variants)
        return chat_reply("Use it as documented [1].")


@pytest.fixture(scope="module")
def model():
    return FakeModel()


@pytest.fixture(scope="module")
def client(tmp_path_factory, model):
    documents = as_documents(FILES)
    home = tmp_path_factory.mktemp("rag-home")
    with scripted_service(home, model, "exp", documents, relevance_threshold=-1.0) as c:
        yield c


def _ask(client, **body) -> dict:
    response = client.post("/v1/rag/query", json={"collection": "exp", "query": QUESTION, "top_k": 1, **body})
    assert response.status_code == 200, response.text
    return response.json()


def test_a_rephrasing_finds_what_the_question_alone_misses(client, model):
    model.variants = "1. write files into a ZIP archive\n2. Which module makes ZIP archives?"
    alone = _ask(client, expand=0)
    assert [s["source"] for s in alone["sources"]] != ["zipfile.md"]
    assert "expansions" not in alone["info"] and model.expansion_prompts == []
    expanded = _ask(client, expand=2)
    assert expanded["info"]["expansions"] == ["write files into a ZIP archive", "Which module makes ZIP archives?"]
    assert [s["source"] for s in expanded["sources"]] == ["zipfile.md"]
    assert model.expansion_prompts[-1][-1]["content"] == f"Give 2 rephrasings of: {QUESTION}"


def test_the_stream_names_the_rephrasings_with_its_sources(client, model):
    model.variants = "write files into a ZIP archive\nWhich module makes ZIP archives?"
    response = client.post("/v1/rag/query", json={"collection": "exp", "query": QUESTION, "top_k": 1,
                                                  "expand": 2, "stream": True})  # fmt: skip
    assert response.status_code == 200
    events = [line for line in response.text.splitlines() if line.startswith("data: {")]
    sources = json.loads(events[0][6:])
    assert sources["expansions"] == ["write files into a ZIP archive", "Which module makes ZIP archives?"]
    assert [s["source"] for s in sources["sources"]] == ["zipfile.md"]


def test_a_reply_that_only_repeats_the_question_retrieves_the_question_alone(client, model):
    model.variants = f"{QUESTION}\n\n  \n- {QUESTION.lower()}"
    expanded = _ask(client, expand=3)
    assert expanded["info"]["expansions"] == []
    assert expanded["sources"] == _ask(client, expand=0)["sources"]


def test_expand_is_bounded():
    with TestClient(create_app(RagServiceSettings())) as c:
        response = c.post("/v1/rag/query", json={"collection": "exp", "query": QUESTION, "expand": 9})
    assert response.status_code == 400 and "expand" in response.text


def test_the_reply_is_cleaned_line_by_line():
    reply = '1. "copy a file"\n2) Copy a file!\n- move it\n* ok\nRephrasing 3: delete a file\n4. copy a file'
    assert parse_variants(reply, "Copy a FILE", 5) == ["move it", "delete a file"]
    assert parse_variants("a one\nb two\nc three", "q", 2) == ["a one", "b two"]


def test_fusion_keeps_each_chunk_once_and_ranks_agreement_first():
    def hit(chunk: str) -> Hit:
        return Hit(chunk, chunk, {}, 1.0, dense_score=0.5)

    fused = fuse_hits([[hit("a"), hit("b")], [hit("b"), hit("c")], [hit("b"), hit("a")]], top_k=3)
    assert [h.id for h in fused] == ["b", "a", "c"]
    assert fused[0].score == pytest.approx(1 / 62 + 2 / 61)
