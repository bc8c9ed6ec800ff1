"""Collections and their documents: list, ingest (multipart or JSON), delete."""

from __future__ import annotations

import json

from fastapi import APIRouter, Path, Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from lathe.errors import InvalidRequestError
from services.rag.deps import ServiceDep
from services.rag.documents import DocumentError
from services.rag.ingest import IncomingDocument
from services.rag.schemas import COLLECTION, IngestRequest

router = APIRouter(prefix="/v1/rag/collections", tags=["rag"])

CollectionName = Path(pattern=COLLECTION, description="Collection name")


@router.get("")
async def list_collections(rag: ServiceDep) -> dict:
    import asyncio

    return {"object": "list", "data": await asyncio.to_thread(rag.store.collections)}


@router.get("/{collection}/documents")
async def list_documents(rag: ServiceDep, collection: str = CollectionName) -> dict:
    import asyncio

    documents = await asyncio.to_thread(rag.store.documents, collection)
    return {"object": "list", "collection": collection, "data": documents}


@router.post("/{collection}/documents")
async def ingest(request: Request, rag: ServiceDep, collection: str = CollectionName) -> dict:
    """Multipart (``files`` parts, optional ``ids``/``sources`` JSON lists) or JSON ``{"documents": [...]}``."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        documents = await _from_multipart(request)
    else:
        documents = await _from_json(request)
    result = await rag.ingest(collection, documents)
    if result["failed"] == len(documents):
        first = result["documents"][0]["error"]
        raise DocumentError(
            first["message"] if len(documents) == 1 else f"no document could be ingested; first: {first['message']}",
            param="documents",
        )
    return result


@router.delete("/{collection}/documents/{doc_id:path}")
async def delete_document(doc_id: str, rag: ServiceDep, collection: str = CollectionName) -> dict:
    return await rag.delete_document(collection, doc_id)


@router.delete("/{collection}")
async def drop_collection(rag: ServiceDep, collection: str = CollectionName) -> dict:
    import asyncio

    await asyncio.to_thread(rag.store.drop, collection)
    return {"object": "rag.collection.deleted", "collection": collection}


async def _from_json(request: Request) -> list[IncomingDocument]:
    try:
        data = await request.json()
    except ValueError:
        raise InvalidRequestError("the body is neither multipart/form-data nor valid JSON") from None
    try:
        body = IngestRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise InvalidRequestError(f"{param}: {first['msg']}" if param else first["msg"], param=param) from None
    documents = []
    for i, doc in enumerate(body.documents):
        try:
            data_bytes = doc.data()
        except ValueError as exc:
            raise InvalidRequestError(f"documents.{i}.content_base64: {exc}", param=f"documents.{i}") from None
        name = doc.filename or doc.source or doc.id or f"document-{i}"
        fmt = doc.format or (None if doc.filename else "text")
        documents.append(IncomingDocument(name, data_bytes, doc.id, doc.source, fmt, doc.metadata))
    return documents


async def _from_multipart(request: Request) -> list[IncomingDocument]:
    form = await request.form(max_files=1000, max_part_size=64 * 1024 * 1024)
    files = [f for f in form.getlist("files") if isinstance(f, UploadFile)]
    if not files:
        raise InvalidRequestError("a multipart ingest needs one or more 'files' parts", param="files")
    ids = _json_list(form.get("ids"), "ids", len(files))
    sources = _json_list(form.get("sources"), "sources", len(files))
    documents = []
    for i, upload in enumerate(files):
        data = await upload.read()
        name = upload.filename or f"upload-{i}"
        documents.append(IncomingDocument(name, data, ids[i] if ids else None, sources[i] if sources else name))
    return documents


def _json_list(value, name: str, expected: int) -> list[str] | None:
    if value is None:
        return None
    try:
        items = json.loads(str(value))
    except ValueError:
        raise InvalidRequestError(f"'{name}' must be a JSON list of strings", param=name) from None
    if not isinstance(items, list) or len(items) != expected or not all(isinstance(i, str) and i for i in items):
        raise InvalidRequestError(f"'{name}' must list one non-empty string per file ({expected})", param=name)
    return items
