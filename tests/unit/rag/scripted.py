"""A RAG service with its real encoder and store, whose gateway is an httpx transport that
answers as a model would: each test scripts the model's replies (tests/integration runs the
served SmolLM2 instead)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from services.rag.app import create_app
from services.rag.service import RagService
from services.rag.settings import RagServiceSettings


def as_documents(files: dict[str, str]) -> list[dict]:
    """``name -> text`` as the ingest API's documents, each named by its file."""
    return [{"source": name, "filename": name, "text": text} for name, text in files.items()]


def chat_reply(content: str) -> httpx.Response:
    """An OpenAI chat completion answering ``content``."""
    choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
    return httpx.Response(200, json={"choices": [choice], "usage": {"prompt_tokens": 9, "completion_tokens": 9}})


@contextlib.contextmanager
def scripted_service(
    home: Path, model: Callable[[httpx.Request], httpx.Response], collection: str, documents: list[dict], **settings
) -> Iterator[TestClient]:
    """The service's app over ``model``, with ``documents`` ingested into ``collection``."""
    config = RagServiceSettings(LATHE_HOME=str(home), **settings)
    service = RagService.build(config, transport=httpx.MockTransport(model))
    with TestClient(create_app(config, service=service)) as client:
        response = client.post(f"/v1/rag/collections/{collection}/documents", json={"documents": documents})
        assert response.status_code == 200 and response.json()["failed"] == 0, response.text
        yield client
