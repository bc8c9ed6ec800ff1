"""``POST /v1/embeddings`` on the RAG service: OpenAI's shape from the real MiniLM.

Through the gateway with the official client it is tested in tests/load/test_load.py.
"""

from __future__ import annotations

import base64
import math

import numpy as np
import openai
import pytest
from fastapi.testclient import TestClient

from services.rag.app import create_app
from services.rag.settings import RagServiceSettings

MODEL = "all-minilm-l6-v2"
TEXTS = ["Use os.path.join to join path components.", "Pears grow on trees.", "A much longer sentence " * 20]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    home = tmp_path_factory.mktemp("rag-embeddings-home")
    settings = RagServiceSettings(LATHE_HOME=str(home), gateway_url="http://127.0.0.1:9")
    with TestClient(create_app(settings)) as c:
        yield c


def test_vectors_are_the_ones_retrieval_uses_in_input_order_with_usage(client):
    response = client.post("/v1/embeddings", json={"model": MODEL, "input": TEXTS})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list" and body["model"] == MODEL
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    assert all(d["object"] == "embedding" and len(d["embedding"]) == 384 for d in body["data"])
    assert all(math.isclose(np.linalg.norm(d["embedding"]), 1.0, abs_tol=1e-4) for d in body["data"])
    # Batched by length inside, yet each vector is its own input's: the same as embedding it alone.
    encoder = client.app.state.rag.encoder
    for text, item in zip(TEXTS, body["data"], strict=True):
        assert np.allclose(item["embedding"], encoder.encode([text])[0], atol=1e-5)
    usage = body["usage"]
    assert usage["prompt_tokens"] == usage["total_tokens"] > 3 * 2  # word pieces with [CLS] and [SEP]


def test_a_single_string_gives_one_vector(client):
    body = client.post("/v1/embeddings", json={"model": MODEL, "input": "hello"}).json()
    assert len(body["data"]) == 1 and body["usage"]["prompt_tokens"] == 3  # [CLS] hello [SEP]


def test_base64_is_little_endian_float32_of_the_same_vector(client):
    plain = client.post("/v1/embeddings", json={"model": MODEL, "input": TEXTS[:2]}).json()
    packed = client.post("/v1/embeddings", json={"model": MODEL, "input": TEXTS[:2], "encoding_format": "base64"})
    for a, b in zip(plain["data"], packed.json()["data"], strict=True):
        decoded = np.frombuffer(base64.b64decode(b["embedding"]), dtype="<f4")
        assert np.allclose(decoded, a["embedding"], atol=1e-7)


def test_the_official_client_reads_it(client):
    # The SDK asks for base64 by default and decodes it itself.
    sdk = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client)
    result = sdk.embeddings.create(model=MODEL, input=TEXTS[:2])
    assert [len(d.embedding) for d in result.data] == [384, 384]
    assert result.usage.prompt_tokens > 0


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ({"model": "text-embedding-3-small", "input": "x"}, 404, "model_not_found", "model"),
        ({"model": MODEL, "input": ""}, 400, "invalid_request", "input"),
        ({"model": MODEL, "input": []}, 400, "invalid_request", "input"),
        ({"model": MODEL, "input": ["ok", ""]}, 400, "invalid_request", "input"),
        ({"model": MODEL, "input": [[101, 2054]]}, 400, "invalid_request", "input"),  # token ids
        ({"model": MODEL, "input": ["x"] * 2049}, 400, "invalid_request", "input"),
        ({"model": MODEL, "input": "x", "encoding_format": "int8"}, 400, "invalid_request", "encoding_format"),
        ({"model": MODEL, "input": "x", "dimensions": 128}, 400, "invalid_request", "dimensions"),
        ({"model": MODEL, "input": "x", "colour": "red"}, 400, "invalid_request", "colour"),
        ({"input": "x"}, 400, "invalid_request", "model"),
    ],
)
def test_bad_input_gets_a_4xx_in_openai_shape(client, body, status, code, param):
    response = client.post("/v1/embeddings", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and error["code"] == code
    assert (error["param"] or "").startswith(param)
