"""The RAG service with its real parts: MiniLM, Qdrant local mode, LlamaIndex's store.

Generation needs the served model behind the gateway and is tested in
tests/integration/test_rag_agent.py; here everything up to it.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from services.rag.app import create_app
from services.rag.settings import RagServiceSettings

PATHS_MD = "# Paths\n\n## Joining\n\nUse os.path.join to join path components. It inserts the separator.\n"
FRUIT_TXT = "Apples are red or green. Pears are sweet and grow on trees in orchards."


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    home = tmp_path_factory.mktemp("rag-home")
    settings = RagServiceSettings(LATHE_HOME=str(home), gateway_url="http://127.0.0.1:9")
    with TestClient(create_app(settings)) as c:
        c.home = home
        yield c


def _ingest(client, collection: str, *docs: dict):
    return client.post(f"/v1/rag/collections/{collection}/documents", json={"documents": list(docs)})


def _ids(client, collection: str) -> dict[str, tuple[str, int]]:
    docs = client.get(f"/v1/rag/collections/{collection}/documents").json()["data"]
    return {d["id"]: (d["hash"], d["chunks"]) for d in docs}


def test_ingest_is_idempotent_and_replaces_exactly_a_changed_document(client):
    paths = {"source": "guide/paths.md", "filename": "paths.md", "text": PATHS_MD}
    fruit = {"source": "fruit.txt", "text": FRUIT_TXT}
    first = _ingest(client, "idem", paths, fruit).json()
    assert [d["status"] for d in first["documents"]] == ["added", "added"]
    assert first["chunks_written"] == 2
    before = _ids(client, "idem")

    again = _ingest(client, "idem", paths, fruit).json()
    assert [d["status"] for d in again["documents"]] == ["unchanged", "unchanged"]
    assert again["chunks_written"] == 0  # nothing re-embedded, nothing written
    assert _ids(client, "idem") == before
    metric = 'lathe_rag_documents_ingested_total{collection="idem",outcome="unchanged"} 2.0'
    assert metric in client.get("/metrics").text

    long_fruit = {"source": "fruit.txt", "text": FRUIT_TXT + " " + " ".join(["Plums are purple and juicy."] * 40)}
    changed = _ingest(client, "idem", long_fruit).json()
    assert changed["documents"][0]["status"] == "updated"
    after = _ids(client, "idem")
    assert after["guide/paths.md"] == before["guide/paths.md"]  # the other document is untouched
    assert after["fruit.txt"][0] != before["fruit.txt"][0]
    assert after["fruit.txt"][1] == changed["chunks_written"] > 1  # old chunks gone, new ones all there
    assert client.get("/v1/rag/collections").json()["data"] == [{"name": "idem", "chunks": after["fruit.txt"][1] + 1}]

    removed = client.delete("/v1/rag/collections/idem/documents/fruit.txt").json()
    assert removed["chunks_removed"] == after["fruit.txt"][1]
    assert set(_ids(client, "idem")) == {"guide/paths.md"}
    missing = client.delete("/v1/rag/collections/idem/documents/fruit.txt")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_retrieve_ranks_the_relevant_chunk_first_in_every_mode_and_filters(client):
    _ingest(
        client, "modes",
        {"source": "paths.md", "filename": "paths.md", "text": PATHS_MD},
        {"source": "fruit.txt", "text": FRUIT_TXT},
    )  # fmt: skip
    for mode in ("dense", "sparse", "hybrid"):
        body = {"query": "how do I join path components", "collection": "modes", "mode": mode, "top_k": 2}
        data = client.post("/v1/rag/retrieve", json=body).json()["data"]
        assert data[0]["source"] == "paths.md", mode
        assert data[0]["section"] == "Paths > Joining" and data[0]["title"] == "Paths"
    filtered = client.post(
        "/v1/rag/retrieve", json={"query": "join path", "collection": "modes", "filters": {"source": "fruit.txt"}}
    ).json()["data"]
    assert [d["source"] for d in filtered] == ["fruit.txt"]


def test_date_filters_keep_documents_inside_the_range(client):
    notes = [
        {"source": f"release-{day}.md", "text": f"# Release\n\nThe release of May {day} fixes the path joining bug.",
         "metadata": {"date": f"2024-05-{day:02d}"}}
        for day in (1, 15, 30)
    ]  # fmt: skip
    notes.append({"source": "undated.md", "text": "The path joining bug is fixed.", "metadata": {}})
    assert _ingest(client, "dated", *notes).json()["failed"] == 0

    def sources(date_filter):
        body = {"query": "path joining bug", "collection": "dated", "top_k": 10, "filters": {"date": date_filter}}
        response = client.post("/v1/rag/retrieve", json=body)
        assert response.status_code == 200, response.text
        return sorted(hit["source"] for hit in response.json()["data"])

    assert sources({"gte": "2024-05-10"}) == ["release-15.md", "release-30.md"]  # undated ones never match a range
    assert sources({"gt": "2024-05-01", "lt": "2024-05-30T00:00:00Z"}) == ["release-15.md"]
    assert sources({"lte": "2024-05-01T02:00:00+02:00"}) == ["release-1.md"]  # 00:00 UTC: the same moment

    bad = _ingest(client, "dated", {"source": "x.md", "text": "Some text.", "metadata": {"date": "last Tuesday"}})
    # The only document failed: the whole request is the 400, naming the field.
    assert bad.status_code == 400 and "metadata.date 'last Tuesday'" in bad.json()["error"]["message"]


@pytest.mark.parametrize(
    "filters, message",
    [
        ({"date": "2024-05-01"}, "filter 'date' takes a range"),
        ({"source": {"gte": "2024-05-01"}}, "filter 'source' takes a value"),
        ({"date": {}}, "needs one of 'gte'"),
        ({"date": {"after": "2024-05-01"}}, "Extra inputs"),
        ({"colour": "red"}, "unknown filter field(s) ['colour']"),
    ],
)
def test_bad_filters_are_refused_naming_the_filter(client, filters, message):
    response = client.post("/v1/rag/retrieve", json={"query": "x", "collection": "dated", "filters": filters})
    assert response.status_code == 400 and response.json()["error"]["param"].startswith("filters")
    assert message in response.json()["error"]["message"]


def test_irrelevant_questions_get_i_dont_know_without_generation(client):
    _ingest(client, "unknown", {"source": "fruit.txt", "text": FRUIT_TXT})
    # The gateway URL points nowhere: an answer here proves no generation was attempted.
    answer = client.post("/v1/rag/query", json={"query": "Which year did the Byzantine empire fall?",
                                                 "collection": "unknown"}).json()  # fmt: skip
    assert answer["grounded"] is False and answer["citations"] == []
    assert answer["answer"].startswith("I don't know")


def test_one_bad_file_does_not_abort_the_others(client):
    response = client.post(
        "/v1/rag/collections/mixed/documents",
        files=[("files", ("notes.txt", FRUIT_TXT.encode())), ("files", ("broken.pdf", b"%PDF-1.4 nonsense")),
               ("files", ("data.xyz", b"??"))],
    )  # fmt: skip
    body = response.json()
    assert response.status_code == 200
    statuses = {d["source"]: d["status"] for d in body["documents"]}
    assert statuses == {"notes.txt": "added", "broken.pdf": "failed", "data.xyz": "failed"}
    errors = {d["source"]: d["error"]["message"] for d in body["documents"] if d["status"] == "failed"}
    assert "PDF" in errors["broken.pdf"] and "unsupported file type" in errors["data.xyz"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "param"),
    [
        ("post", "/v1/rag/retrieve", {"query": "  ", "collection": "modes"}, 400, "query"),
        ("post", "/v1/rag/retrieve", {"query": "x", "collection": "no-such"}, 404, "collection"),
        ("post", "/v1/rag/retrieve", {"query": "x", "collection": "bad name!"}, 400, "collection"),
        ("post", "/v1/rag/retrieve", {"query": "x", "top_k": "many"}, 400, "top_k"),
        ("post", "/v1/rag/retrieve", {"query": "x", "filters": {"colour": "red"}}, 400, "filters"),
        ("post", "/v1/rag/collections/docs/documents", {"documents": [{"source": "a.md"}]}, 400, "documents.0"),
        ("post", "/v1/rag/collections/docs/documents", {"documents": [{"filename": "a.zip", "text": "x"}]}, 400,
         "documents"),
    ],
)  # fmt: skip
def test_bad_input_gets_a_4xx_in_openai_shape(client, method, path, body, status, param):
    response = getattr(client, method)(path, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and error["type"] == "invalid_request_error"
    assert (error["param"] or "").startswith(param)


@pytest.mark.fault
def test_a_store_held_by_another_process_gives_a_clear_error(client):
    code = (
        "from services.rag.store import VectorStore\n"
        f"VectorStore.open(url=None, path={str(client.home / 'rag' / 'qdrant')!r}, api_key=None, dimension=384)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "in use by another process" in result.stderr
