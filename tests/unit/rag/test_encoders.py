"""The ONNX Runtime encoder against sentence-transformers on the real MiniLM."""

from __future__ import annotations

import numpy as np
import pytest

from services.rag.encoders import DenseEncoder
from services.rag.settings import RagServiceSettings

TEXTS = [
    "How do I join two paths?",
    "hashlib",
    "The queue module implements multi-producer, multi-consumer queues. " * 30,  # past 256 word pieces
    "Pears ripen in late summer; apples keep for months in a cool cellar.",
]


@pytest.fixture(scope="module")
def model_path():
    return RagServiceSettings().embed_model()


@pytest.fixture(scope="module")
def torch_encoder(model_path):
    return DenseEncoder(model_path, batch_size=2, threads=None, backend="torch")


def test_onnx_gives_torchs_vectors_and_word_piece_counts(model_path, torch_encoder, tmp_path):
    onnx = DenseEncoder(model_path, batch_size=2, threads=None, backend="onnx", cache=tmp_path)
    assert onnx.backend == "onnx" and onnx.dimension == torch_encoder.dimension
    vectors, pieces = onnx.embed(TEXTS)
    expected, expected_pieces = torch_encoder.embed(TEXTS)
    assert pieces == expected_pieces
    # Rows in input order (batches are sorted by length), unit length, the same directions.
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert float((vectors * expected).sum(axis=1).min()) > 0.9999
    assert len(list(tmp_path.rglob("model.onnx"))) == 1
    again = DenseEncoder(model_path, batch_size=2, threads=None, backend="onnx", cache=tmp_path)  # reused
    assert np.allclose(again.embed(TEXTS)[0], vectors, atol=1e-6)


def test_int8_is_close_but_not_the_same(model_path, torch_encoder, tmp_path):
    int8 = DenseEncoder(model_path, batch_size=4, threads=None, backend="onnx-int8", cache=tmp_path)
    vectors, _ = int8.embed(TEXTS)
    expected, _ = torch_encoder.embed(TEXTS)
    cosines = (vectors * expected).sum(axis=1)
    assert float(cosines.min()) > 0.8 and float(cosines.min()) < 0.9999
    assert int8.encode([]) == [] and int8.embed([])[0].shape == (0, int8.dimension)
