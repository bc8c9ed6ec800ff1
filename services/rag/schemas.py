"""Request bodies of the RAG API; every field validated, unknown fields refused."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

COLLECTION = r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$"


class _Strict(BaseModel):
    model_config = {"extra": "forbid"}


class DateRange(_Strict):
    """A range on a document's ``date`` (ISO 8601; a date alone is midnight UTC)."""

    gte: datetime | None = None
    gt: datetime | None = None
    lte: datetime | None = None
    lt: datetime | None = None

    @model_validator(mode="after")
    def _bounded(self) -> DateRange:
        if all(v is None for v in (self.gte, self.gt, self.lte, self.lt)):
            raise ValueError("a date range needs one of 'gte', 'gt', 'lte', 'lt'")
        for name in ("gte", "gt", "lte", "lt"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                setattr(self, name, value.replace(tzinfo=UTC))
        return self


FilterValue = DateRange | str | int | float | bool | list[str] | list[int]
FILTER_FIELDS = ("doc_id", "source", "title", "section", "page", "format", "date")


class _Body(BaseModel):
    model_config = {"extra": "forbid"}


class DocumentIn(_Body):
    """One document in a JSON ingest: its text, or its bytes in base64 with a file name."""

    id: str | None = Field(default=None, min_length=1, max_length=1024)
    source: str | None = Field(default=None, min_length=1, max_length=2048)
    filename: str | None = Field(default=None, min_length=1, max_length=512)
    format: Literal["pdf", "docx", "html", "markdown", "rst", "text"] | None = None
    text: str | None = None
    content_base64: str | None = None
    metadata: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_body(self) -> DocumentIn:
        if (self.text is None) == (self.content_base64 is None):
            raise ValueError("give exactly one of 'text' or 'content_base64'")
        if self.content_base64 is not None and not (self.filename or self.format):
            raise ValueError("'content_base64' needs a 'filename' or a 'format'")
        if not (self.id or self.source or self.filename):
            raise ValueError("give an 'id', a 'source' or a 'filename' to identify the document")
        return self

    def data(self) -> bytes:
        if self.text is not None:
            return self.text.encode("utf-8")
        try:
            return base64.b64decode(self.content_base64 or "", validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("content_base64 is not valid base64") from None


class IngestRequest(_Body):
    documents: list[DocumentIn] = Field(min_length=1, max_length=1000)


class RetrieveRequest(_Body):
    query: str = Field(min_length=1, max_length=4000)
    collection: str = Field(default="docs", pattern=COLLECTION)
    top_k: int | None = Field(default=None, ge=1, le=500)
    mode: Literal["dense", "sparse", "hybrid"] = "hybrid"
    reranker: Literal["mmr", "none", "llm"] | None = None
    filters: dict[str, FilterValue] = Field(default_factory=dict)

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the query is empty")
        return value

    @field_validator("filters")
    @classmethod
    def _known_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = set(value) - set(FILTER_FIELDS)
        if unknown:
            raise ValueError(f"unknown filter field(s) {sorted(unknown)}; filter on {sorted(FILTER_FIELDS)}")
        for key, condition in value.items():
            if (key == "date") != isinstance(condition, DateRange):
                wanted = 'a range such as {"gte": "2024-01-01"}' if key == "date" else "a value or a list of values"
                raise ValueError(f"filter {key!r} takes {wanted}")
        return value


class ChatTurn(_Body):
    """One earlier turn of a conversation: the user's question or the answer given."""

    role: Literal["user", "assistant"]
    content: str = Field(min_length=1, max_length=20_000)


class QueryRequest(RetrieveRequest):
    model: str | None = Field(default=None, min_length=1, max_length=256)
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1, le=4096)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    # Earlier turns, oldest first; ``query`` is the new question.
    messages: list[ChatTurn] = Field(default_factory=list, max_length=200)
    # Condense a follow-up into a standalone question before retrieval.
    rewrite: bool = True
    # Also retrieve this many rephrasings of the question by the model, fused (None: the service's default).
    expand: int | None = Field(default=None, ge=0, le=4)


# OpenAI's own limit on inputs per embeddings request.
MAX_EMBEDDING_INPUTS = 2048


class EmbeddingsRequest(_Body):
    """OpenAI's embeddings request. ``input`` is text; token-id arrays are refused."""

    model: str = Field(min_length=1, max_length=256)
    input: str | list[str]
    # The official SDK asks for base64 (little-endian float32) unless told otherwise.
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = Field(default=None, max_length=256)

    @field_validator("input")
    @classmethod
    def _texts(cls, value: str | list[str]) -> str | list[str]:
        texts = [value] if isinstance(value, str) else value
        if not texts:
            raise ValueError("input must not be an empty list")
        if len(texts) > MAX_EMBEDDING_INPUTS:
            raise ValueError(f"input has {len(texts)} items, over the limit of {MAX_EMBEDDING_INPUTS}")
        if not all(texts):
            raise ValueError("input must not contain empty strings")
        return value

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)
