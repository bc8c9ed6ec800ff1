"""Faults in the RAG store: a folder held by another process, an ingest killed mid-write.

The store's folder is one process's (a lock file) and Qdrant Edge writes every update
to its write-ahead log, so both faults are real here: the service runs in process (its
real MiniLM and Qdrant Edge on a temporary folder), the other process is a real one, and the ingest that
dies is a real process killed with SIGKILL once a chosen number of chunks is on disk
(tests/support/interrupted_ingest.py). No platform is needed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lathe.errors import PlatformError
from lathe.platform.components import RagComponent
from lathe.platform.processes import StateStore, port_is_free
from lathe.settings import load_settings
from services.rag.app import create_app
from services.rag.chunking import make_chunker
from services.rag.documents import parse_document
from services.rag.ingest import IncomingDocument, Ingestor
from services.rag.settings import RagServiceSettings
from services.rag.store import point_id

pytestmark = [pytest.mark.integration, pytest.mark.fault]

REPO = Path(__file__).resolve().parents[2]
COLLECTION = "faults"
RAG_PORT = 24731  # the RAG service `lathe up` would start (its own port: no platform here)
CHUNK_WORDS, OVERLAP_WORDS = 40, 5  # small chunks: a short document makes several
TOPICS = ["quokka", "zeppelin", "saffron", "tundra", "obsidian", "marimba"]
FACTS = [
    "lives far from the noisy city and few visitors ever see it up close",
    "appears in old stories that grandparents tell on long winter evenings",
    "was measured carefully by a team of patient and curious researchers",
    "changes colour slightly when the light of the evening sun falls on it",
    "is the subject of a small museum with a shop and a quiet garden",
    "needs careful handling because it is more fragile than it looks",
    "has a name that many people find hard to spell on the first try",
    "was photographed for a famous magazine cover in a dry summer",
    "keeps surprising the experts who thought they knew everything about it",
]


def document(topic: str, version: int) -> dict:
    sentences = [f"Fact {i + 1} of edition {version}: the {topic} {fact}." for i, fact in enumerate(FACTS)]
    if version > 1:
        sentences.reverse()  # the same topic, other text: another hash
    return {"source": f"notes/{topic}.txt", "filename": f"{topic}.txt", "text": " ".join(sentences)}


def settings_for(home: Path) -> RagServiceSettings:
    # The gateway URL points nowhere: nothing here generates.
    return RagServiceSettings(
        LATHE_HOME=str(home), chunk_words=CHUNK_WORDS, overlap_words=OVERLAP_WORDS, gateway_url="http://127.0.0.1:9"
    )


def child_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LATHE_")}
    env.update(LATHE_HOME=str(home), LATHE_RAG_CHUNK_WORDS=str(CHUNK_WORDS), LATHE_RAG_OVERLAP_WORDS=str(OVERLAP_WORDS))
    return env


_CHUNKER = make_chunker(RagServiceSettings.model_fields["chunking"].default, CHUNK_WORDS, OVERLAP_WORDS)
_HASHER = Ingestor(None, None, _CHUNKER, None, 0)


def chunks_of(doc: dict) -> int:
    return len(_CHUNKER.split(parse_document(doc["filename"], doc["text"].encode(), None)))


def hash_of(doc: dict) -> str:
    return _HASHER.content_hash(IncomingDocument(doc["filename"], doc["text"].encode(), source=doc["source"]))


def ingest(client: TestClient, docs: list[dict]):
    return client.post(f"/v1/rag/collections/{COLLECTION}/documents", json={"documents": docs})


def listing(client: TestClient) -> dict[str, tuple[str, int]]:
    response = client.get(f"/v1/rag/collections/{COLLECTION}/documents")
    assert response.status_code == 200, response.text
    return {d["id"]: (d["hash"], d["chunks"]) for d in response.json()["data"]}


def retrieve(client: TestClient, query: str, mode: str, top_k: int = 50) -> list[dict]:
    body = {"query": query, "collection": COLLECTION, "mode": mode, "top_k": top_k, "reranker": "none"}
    response = client.post("/v1/rag/retrieve", json=body)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def raw_versions(folder: Path) -> dict[str, dict[str, int]]:
    """Chunks per document and hash, read straight from the folder: no service, no repair."""
    import qdrant_edge as qe

    shard = qe.EdgeShard.load(str(folder / "edge" / COLLECTION))
    try:
        found: dict[str, dict[str, int]] = {}
        offset = None
        while True:
            request = qe.ScrollRequest(offset=offset, limit=256, with_payload=["doc_id", "doc_hash"])
            points, offset = shard.scroll(request)
            for p in points:
                per_hash = found.setdefault(p.payload["doc_id"], {})
                per_hash[p.payload["doc_hash"]] = per_hash.get(p.payload["doc_hash"], 0) + 1
            if offset is None:
                return found
    finally:
        shard.close()


def assert_only_whole_versions_are_searchable(client: TestClient, topics: list[str]) -> None:
    docs = listing(client)
    whole = {point_id(doc_id, h, i) for doc_id, (h, n) in docs.items() for i in range(n)}
    # Every chunk a dense search can reach (top_k past the collection's size) is whole.
    assert {hit["id"] for hit in retrieve(client, "facts about it", "dense")} == whole
    for topic in topics:
        hits = retrieve(client, topic, "sparse")
        assert hits and {hit["source"] for hit in hits} == {f"notes/{topic}.txt"}, topic


def read_until(process: subprocess.Popen, marker: str, timeout_s: float) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break  # it exited
        lines.append(line.rstrip())
        if line.startswith(marker):
            return lines
    process.kill()
    rest = process.stdout.read() if process.stdout else ""
    raise AssertionError(f"no {marker!r} from the child (exit {process.poll()}):\n" + "\n".join(lines) + rest[-3000:])


def test_a_store_held_by_another_process_is_a_clear_503_and_loses_nothing(tmp_path, monkeypatch):
    home = tmp_path / "home"
    settings = settings_for(home)
    topics = TOPICS[:3]
    with TestClient(create_app(settings)) as client:
        assert ingest(client, [document(t, 1) for t in topics]).status_code == 200
        before = listing(client)

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom services.rag.store import VectorStore\n"
         "store = VectorStore.open(url=None, path=sys.argv[1], api_key=None, dimension=384)\n"
         "print('HOLDING', flush=True)\ntime.sleep(600)\n", str(settings.store_path)],
        cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        read_until(holder, "HOLDING", 60)
        # `lathe up` starting the RAG service meanwhile: it says why after a short grace
        # instead of waiting out its 120 s start timeout, and leaves no process behind.
        for name in [name for name in os.environ if name.startswith("LATHE_")]:
            monkeypatch.delenv(name)
        monkeypatch.setenv("LATHE_HOME", str(home))
        monkeypatch.setenv("LATHE_RAG_PORT", str(RAG_PORT))
        platform = load_settings()
        component = RagComponent(platform, StateStore(platform.run_dir))
        with pytest.raises(PlatformError, match=r"is not healthy: .*in use by another process") as failed:
            component.start(on_wait=lambda elapsed, detail: None)
        assert "after 120s" not in str(failed.value)
        assert component.store.load("rag") is None and port_is_free(RAG_PORT)

        with TestClient(create_app(settings)) as client:  # the service starts all the same
            health = client.get("/health")
            assert health.status_code == 503, health.text
            assert health.json()["status"] == "unavailable" and "in use by another process" in health.json()["detail"]
            assert health.json()["code"] == "store_locked"
            calls = {
                "ingest": ingest(client, [document(TOPICS[3], 1)]),
                "retrieve": client.post("/v1/rag/retrieve", json={"query": "quokka", "collection": COLLECTION}),
                "documents": client.get(f"/v1/rag/collections/{COLLECTION}/documents"),
            }
            for name, response in calls.items():
                assert response.status_code == 503, (name, response.text)
                error = response.json()["error"]
                assert set(error) == {"message", "type", "param", "code"}, name
                assert error["code"] == "store_locked", name
                # It names the folder and its lock file, and says what to do.
                assert str(settings.store_path / ".lock") in error["message"], name
                assert "in use by another process" in error["message"] and "stop the other process" in error["message"]

            holder.kill()  # a holder that dies releases its lock: nothing stale is left
            holder.wait(timeout=30)
            # The same service, not restarted: the next call opens the store.
            assert client.get("/health").status_code == 200
            assert listing(client) == before  # nothing lost, nothing half-written
            assert_only_whole_versions_are_searchable(client, topics)
            added = ingest(client, [document(TOPICS[3], 1)]).json()
            assert [d["status"] for d in added["documents"]] == ["added"]
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_an_ingest_killed_mid_write_leaves_whole_documents_and_a_rerun_finishes(tmp_path, monkeypatch):
    home = tmp_path / "home"
    settings = settings_for(home)
    first = [document(t, 1) for t in TOPICS[:5]]
    with TestClient(create_app(settings)) as client:
        assert [d["status"] for d in ingest(client, first).json()["documents"]] == ["added"] * 5
        before = listing(client)

    q, z, s, t, o, m = TOPICS
    second = [document(q, 2), document(z, 1), document(s, 2), document(t, 2), document(o, 1), document(m, 1)]
    new = {d["source"]: d for d in second}
    ids = {topic: f"notes/{topic}.txt" for topic in TOPICS}
    assert chunks_of(new[ids[s]]) >= 2 and chunks_of(new[ids[q]]) >= 2
    # Stop after the quokka's new version is whole (and its old one deleted: that comes
    # first) and one chunk of the saffron's new version is on disk.
    pause_after = chunks_of(new[ids[q]]) + 1
    manifest = tmp_path / "second.json"
    manifest.write_text(json.dumps(second))
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.support.interrupted_ingest", COLLECTION, str(manifest),
         "--pause-after-chunks", str(pause_after)],
        cwd=REPO, env=child_env(home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        read_until(child, "PAUSED", 180)
    finally:
        child.kill()
        child.wait(timeout=30)

    # What the crash left on disk: every document it touched still has a whole version.
    raw = raw_versions(settings.store_path)
    assert raw[ids[q]] == {hash_of(new[ids[q]]): chunks_of(new[ids[q]])}  # replaced
    assert raw[ids[s]] == {before[ids[s]][0]: before[ids[s]][1], hash_of(new[ids[s]]): 1}  # cut mid-write
    for topic in (z, t, o):
        assert raw[ids[topic]] == {before[ids[topic]][0]: before[ids[topic]][1]}, topic  # untouched
    assert ids[m] not in raw  # never reached

    # The service opens the folder again: readers see whole documents only.
    with TestClient(create_app(settings)) as client:
        after_crash = listing(client)
        expected = dict(before, **{ids[q]: (hash_of(new[ids[q]]), chunks_of(new[ids[q]]))})
        assert after_crash == expected  # the saffron's half-written version is gone, its old one stays
        assert_only_whole_versions_are_searchable(client, TOPICS[:5])

        # Running the same ingest again finishes the job and rewrites nothing that is done.
        rerun = ingest(client, second).json()
        statuses = {d["id"]: d["status"] for d in rerun["documents"]}
        assert statuses == {
            ids[q]: "unchanged", ids[z]: "unchanged", ids[s]: "updated",
            ids[t]: "updated", ids[o]: "unchanged", ids[m]: "added",
        }  # fmt: skip
        assert rerun["chunks_written"] == sum(chunks_of(new[ids[x]]) for x in (s, t, m))
        assert listing(client) == {doc_id: (hash_of(d), chunks_of(d)) for doc_id, d in new.items()}
        assert_only_whole_versions_are_searchable(client, TOPICS)

        # A crash between writing a new version and deleting the old one leaves both whole.
        backend = client.app.state.rag.store.backend
        cleanup = backend.delete

        def crash_before_cleanup(collection, filters, keep_hash=None):
            if keep_hash is not None:
                raise RuntimeError("crashed between writing the new chunks and deleting the old")
            return cleanup(collection, filters, keep_hash)

        monkeypatch.setattr(backend, "delete", crash_before_cleanup)
        zeppelin = document(z, 2)
        assert "crashed between" in ingest(client, [zeppelin]).json()["error"]["message"]
        monkeypatch.undo()

    assert raw_versions(settings.store_path)[ids[z]] == {
        before[ids[z]][0]: before[ids[z]][1],
        hash_of(zeppelin): chunks_of(zeppelin),
    }
    with TestClient(create_app(settings)) as client:
        # Reopened: the newer whole version is kept; the write is complete, not redone.
        assert listing(client)[ids[z]] == (hash_of(zeppelin), chunks_of(zeppelin))
        assert_only_whole_versions_are_searchable(client, TOPICS)
        again = ingest(client, [zeppelin]).json()
        assert again["documents"][0]["status"] == "unchanged" and again["chunks_written"] == 0
