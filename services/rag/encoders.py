"""The two encoders of hybrid retrieval: MiniLM (dense) and a BM25-style sparse encoder.

The sparse encoder is Lathe's own because fastembed's BM25 downloads its model at
run time. It stores BM25's saturated term frequency per document term; Qdrant's IDF
modifier multiplies in the inverse document frequency at query time, from the
collection's own statistics, so adding documents never re-encodes old ones.
"""

from __future__ import annotations

import logging
import re
import threading
import zlib
from collections import Counter
from pathlib import Path

_TOKEN = re.compile(r"[a-z0-9_]+(?:\.[a-z0-9_]+)*")

# Small and English: what carries no meaning in a query about documentation.
STOPWORDS = frozenset(
    "a an and are as at be been but by can could did do does for from had has have how i if in into is it its "
    "may me might my no not of on or our shall should so such than that the their them then there these they "
    "this those to too us was we were what when where which while who whom why will with would you your".split()
)


def tokenize(text: str) -> list[str]:
    """Lower-case words, stop words dropped; a dotted name (``os.path``) counts whole and by parts."""
    tokens = []
    for token in _TOKEN.findall(text.lower()):
        parts = token.split(".")
        for word in [token, *parts] if len(parts) > 1 else parts:
            if word in STOPWORDS or len(word) < 2:
                continue
            tokens.append(_stem(word))
    return tokens


def _stem(token: str) -> str:
    # A light plural/verb-form fold; enough for "functions" to meet "function".
    for suffix, keep in (("ies", "y"), ("sses", "ss"), ("ing", ""), ("ed", ""), ("s", "")):
        if token.endswith(suffix) and len(token) - len(suffix) >= 3 and not token.endswith("ss"):
            return token[: -len(suffix)] + keep
    return token


def term_id(token: str) -> int:
    """A stable index for a term (CRC32: the same in every process and release)."""
    return zlib.crc32(token.encode())


class SparseEncoder:
    """BM25 document weights ``tf·(k1+1) / (tf + k1·(1-b+b·len/avg_len))``; queries weigh 1."""

    def __init__(self, k1: float = 1.2, b: float = 0.75, avg_len: float = 120.0) -> None:
        self.k1, self.b, self.avg_len = k1, b, avg_len

    def encode_documents(self, texts: list[str]) -> tuple[list[list[int]], list[list[float]]]:
        indices, values = [], []
        for text in texts:
            tokens = tokenize(text)
            counts = Counter(term_id(t) for t in tokens)
            norm = self.k1 * (1 - self.b + self.b * len(tokens) / self.avg_len)
            ids = sorted(counts)
            indices.append(ids)
            values.append([counts[i] * (self.k1 + 1) / (counts[i] + norm) for i in ids])
        return indices, values

    def encode_queries(self, texts: list[str]) -> tuple[list[list[int]], list[list[float]]]:
        indices, values = [], []
        for text in texts:
            ids = sorted({term_id(t) for t in tokenize(text)})
            indices.append(ids)
            values.append([1.0] * len(ids))
        return indices, values


class DenseEncoder:
    """MiniLM on the CPU, batched by length so padding costs little.

    ``backend``: ``onnx`` (ONNX Runtime, the default: the same vectors, ~3x faster per
    query; ``services/rag/onnx_encoder.py``), ``onnx-int8`` (quantized weights: faster
    batches, vectors that differ) or ``torch`` (sentence-transformers itself). A model
    the export does not reproduce (not mean-pooled) stays on torch, and says so.
    """

    def __init__(
        self,
        model_path: Path,
        batch_size: int = 64,
        threads: int | None = 1,
        backend: str = "torch",
        cache: Path | None = None,
    ) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        if threads:
            torch.set_num_threads(threads)
        self.model = SentenceTransformer(str(model_path), device="cpu")
        self.batch_size = batch_size
        self.dimension = int(self.model.get_embedding_dimension())
        self._lock = threading.Lock()  # one forward pass at a time: threads would fight for cores
        self.backend, self._onnx = "torch", None
        if backend != "torch":
            self._open_onnx(model_path, backend, cache or model_path.parent / "onnx", threads)

    def _open_onnx(self, model_path: Path, backend: str, cache: Path, threads: int | None) -> None:
        from services.rag import onnx_encoder

        if not onnx_encoder.supports(self.model):
            logging.getLogger(__name__).warning(
                "embedding model is not mean-pooled: it runs on torch, not ONNX", extra={"model": str(model_path)}
            )
            return
        onnx_file = onnx_encoder.export(self.model, model_path, cache, int8=backend == "onnx-int8")
        self._onnx = onnx_encoder.OnnxEncoder(onnx_file, self.model.tokenizer, self.model.max_seq_length, threads)
        self.backend = backend

    def encode(self, texts: list[str]) -> list[list[float]]:
        return self._encode(texts, count=False)[0].tolist() if texts else []

    def embed(self, texts: list[str]):
        """For ``/v1/embeddings``: unit vectors (a float32 array, one row per text) and the
        number of word pieces embedded (texts past the model's 256 are cut, as in ingest)."""
        return self._encode(texts, count=True)

    def _encode(self, texts: list[str], count: bool):
        import numpy as np

        if not texts:
            return np.empty((0, self.dimension), dtype=np.float32), 0
        if self._onnx is not None:
            vectors, pieces = self._onnx.encode(texts, self.batch_size)
            return vectors, pieces if count else 0
        order = np.argsort([len(t) for t in texts])
        pieces = 0
        with self._lock:
            if count:  # under the lock too: a fast tokenizer used by two threads fails ("Already borrowed")
                limit = self.model.max_seq_length
                pieces = sum(map(len, self.model.tokenizer(texts, truncation=True, max_length=limit)["input_ids"]))
            vectors = self.model.encode(
                [texts[i] for i in order],
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        out = np.empty_like(vectors, dtype=np.float32)
        out[order] = vectors
        return out, pieces
