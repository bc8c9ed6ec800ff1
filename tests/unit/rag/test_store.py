"""The vector store's one interface, against both backends.

``edge`` is Qdrant Edge in a temporary folder (the local platform's store) and always
runs. ``server`` is a real Qdrant server through qdrant-client and LlamaIndex's store
(the cluster's); no server can run on the CI machine, so those cases run only where
``LATHE_RAG_QDRANT_URL`` names one, and are reported as skipped otherwise. Where the
backends differ, the test says how: only a local folder is locked and repaired on open.
Vectors here are small and hand-made; the encoders are tested elsewhere.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

import pytest

from lathe.errors import NotFoundError
from services.rag.encoders import SparseEncoder
from services.rag.schemas import DateRange
from services.rag.store import VectorStore
from services.rag.store_server import ServerCollections
from services.rag.store_types import DimensionMismatchError, StoreLockedError

DIM = 8
SERVER_URL = os.environ.get("LATHE_RAG_QDRANT_URL")


def unit(*hot: int) -> list[float]:
    vector = [0.05] * DIM
    for i in hot:
        vector[i] = 1.0
    return vector


def chunks(doc_id: str, doc_hash: str, texts: list[str], **meta) -> list[dict]:
    return [
        {
            "text": t,
            "doc_id": doc_id,
            "doc_hash": doc_hash,
            "source": doc_id,
            "title": doc_id.title(),
            "chunk": i,
            **meta,
        }
        for i, t in enumerate(texts)
    ]


@pytest.fixture(params=["edge", "server"])
def store(request, tmp_path):
    if request.param == "server":
        if not SERVER_URL:
            pytest.skip("needs a Qdrant server: set LATHE_RAG_QDRANT_URL to run the store tests against it")
        opened = VectorStore.open(url=SERVER_URL, path=None, api_key=None, dimension=DIM)
    else:
        opened = VectorStore.open(url=None, path=str(tmp_path / "store"), api_key=None, dimension=DIM)
    opened.collection = f"t{uuid.uuid4().hex[:12]}"  # a server is shared: each test its own collection
    yield opened
    if opened.exists(opened.collection):
        opened.drop(opened.collection)
    opened.close()


def write(store, doc_id, doc_hash, texts, vectors, **meta) -> int:
    return store.write_document(store.collection, doc_id, doc_hash, chunks(doc_id, doc_hash, texts, **meta), vectors)


def test_a_replaced_document_keeps_only_its_new_version(store):
    assert write(store, "paths", "h1", ["join paths with os.path.join", "split them"], [unit(0), unit(1)]) == 2
    write(store, "fruit", "f1", ["apples and pears"], [unit(2)])
    versions = store.document_versions(store.collection, "paths")
    assert versions.settled == "h1" and versions.stored == {"h1": 2}

    write(store, "paths", "h2", ["pathlib joins paths with the slash operator"], [unit(0, 3)])
    assert store.document_versions(store.collection, "paths").stored == {"h2": 1}
    listed = {d["id"]: (d["hash"], d["chunks"]) for d in store.documents(store.collection)}
    assert listed == {"paths": ("h2", 1), "fruit": ("f1", 1)}
    assert {"name": store.collection, "chunks": 2} in store.collections()

    assert store.delete_document(store.collection, "fruit") == 1
    assert store.document_versions(store.collection, "fruit") is None
    with pytest.raises(NotFoundError, match="'fruit' is not in collection"):
        store.delete_document(store.collection, "fruit")


def test_dense_and_sparse_search_return_text_and_metadata(store):
    write(store, "paths", "h1", ["join paths with os.path.join", "read a file line by line"], [unit(0), unit(1)])
    write(store, "fruit", "f1", ["apples and pears grow in orchards"], [unit(2)])

    dense = store.search(store.collection, "dense", "", unit(1), 2, {})
    assert dense[0].text == "read a file line by line" and dense[0].metadata["doc_id"] == "paths"
    assert dense[0].metadata["chunk"] == 1 and dense[0].score > dense[1].score
    sparse = store.search(store.collection, "sparse", "orchards", None, 5, {})
    assert [hit.metadata["doc_id"] for hit in sparse] == ["fruit"]
    # The title is indexed with the text: a chunk is found by what its document is called.
    assert {hit.metadata["doc_id"] for hit in store.search(store.collection, "sparse", "paths", None, 5, {})} == {
        "paths"
    }
    assert store.search(store.collection, "sparse", "the of and", None, 5, {}) == []  # stop words only

    vectors = store.vectors(store.collection, [dense[0].id])
    assert len(vectors[dense[0].id]) == DIM


def test_filters_by_value_any_of_and_date_range(store):
    write(store, "old", "o1", ["release notes"], [unit(0)], section="Notes", date="2023-03-01T00:00:00+00:00")
    write(store, "new", "n1", ["release notes"], [unit(0)], section="Notes", date="2025-06-01T00:00:00+00:00")
    write(store, "undated", "u1", ["release notes"], [unit(0)], section="Other")

    def found(filters: dict) -> set[str]:
        return {h.metadata["doc_id"] for h in store.search(store.collection, "sparse", "release", None, 10, filters)}

    assert found({}) == {"old", "new", "undated"}
    assert found({"source": "new"}) == {"new"}
    assert found({"source": ["old", "undated"]}) == {"old", "undated"}
    assert found({"section": "Notes"}) == {"old", "new"}
    after_2024 = DateRange(gte=datetime(2024, 1, 1, tzinfo=UTC))
    assert found({"date": after_2024}) == {"new"}  # a chunk without a date matches no range
    assert found({"date": DateRange(lt=datetime(2024, 1, 1, tzinfo=UTC)), "section": "Notes"}) == {"old"}


def test_a_collection_made_with_another_encoder_is_a_clear_error(store):
    write(store, "paths", "h1", ["join paths"], [unit(0)])
    other = VectorStore(store.backend, DIM * 2)  # the same collections, an encoder of another size
    with pytest.raises(DimensionMismatchError) as failed:
        other.search(store.collection, "dense", "", [0.1] * DIM * 2, 3, {})
    assert f"holds {DIM}-dimensional vectors" in str(failed.value) and f"makes {DIM * 2}" in str(failed.value)
    with pytest.raises(DimensionMismatchError):
        other.write_document(store.collection, "x", "x1", chunks("x", "x1", ["t"]), [[0.1] * DIM * 2])
    assert store.document_versions(store.collection, "x") is None  # nothing half-written


def test_a_local_folder_is_one_processs_and_repaired_on_open(tmp_path):
    """Edge only: a server is shared by design and repairs nothing on connect."""
    path = str(tmp_path / "store")
    store = VectorStore.open(url=None, path=path, api_key=None, dimension=DIM)
    store.write_document("c", "paths", "h1", chunks("paths", "h1", ["a", "b"]), [unit(0), unit(1)])
    # A replacement cut off after one of its two chunks: recorded as two, one stored.
    cut = chunks("paths", "h2", ["c", "d"])
    records = [{**cut[0], "chunk_count": 2, "written_at": 2e9}]
    store.backend.upsert("c", ["00000000-0000-0000-0000-000000000001"], records, [unit(2)])
    with pytest.raises(StoreLockedError, match=r"in use by another process .*\.lock"):
        VectorStore.open(url=None, path=path, api_key=None, dimension=DIM)
    store.close()

    reopened = VectorStore.open(url=None, path=path, api_key=None, dimension=DIM)
    try:
        assert reopened.document_versions("c", "paths").stored == {"h1": 2}
    finally:
        reopened.close()


@pytest.mark.filterwarnings("ignore:Payload indexes have no effect in the local Qdrant")
def test_a_local_mode_folder_is_reindexed_into_the_engine_on_first_open(tmp_path):
    """A folder the store wrote with qdrant-client's local mode: its chunks move over whole."""
    from qdrant_client import QdrantClient

    path = tmp_path / "store"
    client = QdrantClient(path=str(path))
    legacy = VectorStore(ServerCollections(client, SparseEncoder()), DIM)  # LlamaIndex's layout, as written before
    legacy.write_document(
        "docs", "paths", "h1", chunks("paths", "h1", ["join paths", "split paths"]), [unit(0), unit(1)]
    )
    legacy.write_document("docs", "fruit", "f1", chunks("fruit", "f1", ["apples in orchards"]), [unit(2)])
    client.close()

    store = VectorStore.open(url=None, path=str(path), api_key=None, dimension=DIM)
    try:
        listed = {d["id"]: (d["hash"], d["chunks"]) for d in store.documents("docs")}
        assert listed == {"paths": ("h1", 2), "fruit": ("f1", 1)}
        hits = store.search("docs", "sparse", "orchards", None, 3, {})
        assert [(h.text, h.metadata["doc_id"], h.metadata["title"]) for h in hits] == [
            ("apples in orchards", "fruit", "Fruit")
        ]
        assert store.search("docs", "dense", "", unit(1), 1, {})[0].text == "split paths"
    finally:
        store.close()
    assert (path / "local-mode-backup" / "meta.json").exists() and not (path / "meta.json").exists()
    again = VectorStore.open(url=None, path=str(path), api_key=None, dimension=DIM)  # nothing to migrate twice
    try:
        assert again.backend.count("docs") == 3
    finally:
        again.close()
