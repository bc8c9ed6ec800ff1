"""Response caches for non-streamed chat and completion requests, per key opt-in
(``lathe keys create --cache exact`` or ``--cache semantic``).

- **exact**: the same request again. The key is a SHA-256 of the request's canonical JSON
  without what does not shape the answer (``stream``, ``stream_options``, ``user``).
- **semantic**: a request that says nearly the same thing. Its text (every message's role
  and content) is embedded by the RAG service's encoder (``/v1/embeddings``, MiniLM), and
  it hits when a cached request's cosine similarity is at least the threshold
  (``LATHE_GATEWAY_SEMANTIC_CACHE_THRESHOLD``, 0.95) and every other field (sampling
  parameters, tools, ``max_tokens``) is the same.

Every entry is scoped by the model, **the version that answered** and the key's team (the key
alone when it has none). A promotion therefore never serves an old version's answer, and
one tenant never sees another's. Entries live ``LATHE_GATEWAY_CACHE_TTL_S``.

Exact entries are kept in Redis when the gateway has one, so replicas share them, and else
in a bounded in-process LRU. Semantic vectors are kept in process, one matrix per scope,
searched with one matrix product. A vector index (Qdrant, Redis Stack) would be the next
step for caches far larger than ``max_entries``; plain Redis has no vector search.

This module is our own: no caching library both scopes by the serving version and shares
the exact entries through the gateway's Redis.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import numpy as np

if TYPE_CHECKING:
    from services.gateway.keys import KeyInfo
    from services.gateway.metrics import GatewayMetrics
    from services.gateway.settings import GatewayServiceSettings

log = logging.getLogger(__name__)

KINDS = ("exact", "semantic")
_IGNORED = {"stream", "stream_options", "user", "model"}


@dataclass
class Entry:
    data: dict[str, Any]  # the answer as the client received it
    prompt_tokens: int
    completion_tokens: int
    latency_s: float  # what answering it took: what a hit saves

    def dumps(self) -> bytes:
        return json.dumps(self.__dict__).encode()

    @classmethod
    def loads(cls, raw: bytes) -> Entry:
        return cls(**json.loads(raw))


def _canonical(body: dict[str, Any], drop: set[str]) -> str:
    return json.dumps({k: v for k, v in body.items() if k not in drop}, sort_keys=True, separators=(",", ":"))


def exact_key(body: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical(body, _IGNORED).encode()).hexdigest()


def semantic_parts(body: dict[str, Any]) -> tuple[str, str]:
    """(the text to embed, a hash of everything else the answer depends on)."""
    if isinstance(body.get("messages"), list):
        text = "\n".join(
            f"{m.get('role')}: {_content(m.get('content'))}" for m in body["messages"] if isinstance(m, dict)
        )
        rest = _canonical(body, _IGNORED | {"messages"})
    else:
        prompt = body.get("prompt")
        text = prompt if isinstance(prompt, str) else json.dumps(prompt)
        rest = _canonical(body, _IGNORED | {"prompt"})
    return text, hashlib.sha256(rest.encode()).hexdigest()[:16]


def _content(content: Any) -> str:
    if isinstance(content, list):  # content parts: their text
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


class LruStore:
    """Exact entries in process: at most ``max_entries``, each for ``ttl_s``."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    async def get(self, key: str) -> bytes | None:
        item = self._items.get(key)
        if item is None or item[0] < time.monotonic():
            self._items.pop(key, None)
            return None
        self._items.move_to_end(key)
        return item[1]

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        self._items[key] = (time.monotonic() + ttl_s, value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)


class RedisStore:
    """Exact entries in the gateway's Redis, shared by its replicas; Redis down is a miss."""

    def __init__(self, url: str, prefix: str = "lathe:cache:") -> None:
        import redis.asyncio as redis

        self._redis = redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._prefix = prefix

    async def get(self, key: str) -> bytes | None:
        import redis

        try:
            return await self._redis.get(self._prefix + key)
        except (redis.RedisError, OSError):
            return None

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        import redis

        with contextlib.suppress(redis.RedisError, OSError):
            await self._redis.set(self._prefix + key, value, px=max(int(ttl_s * 1000), 1))

    async def close(self) -> None:
        await self._redis.aclose()


class VectorStore:
    """Semantic entries in process: per scope, unit vectors and their entries, searched at once."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._scopes: dict[str, tuple[np.ndarray, list[tuple[float, Entry]]]] = {}

    def search(self, scope: str, vector: np.ndarray, threshold: float) -> tuple[Entry, float] | None:
        held = self._scopes.get(scope)
        if held is None:
            return None
        matrix, entries = held
        similarity = matrix @ vector
        now = time.monotonic()
        for i in np.argsort(-similarity):
            if similarity[i] < threshold:
                return None
            expires, entry = entries[i]
            if expires >= now:
                return entry, float(similarity[i])
        return None

    def add(self, scope: str, vector: np.ndarray, entry: Entry, ttl_s: float) -> None:
        matrix, entries = self._scopes.get(scope, (np.zeros((0, len(vector)), dtype=np.float32), []))
        now = time.monotonic()
        alive = [i for i, (expires, _) in enumerate(entries) if expires >= now]
        alive = alive[max(len(alive) - (self.max_entries - 1), 0) :] if self.max_entries > 1 else []
        matrix = np.vstack([matrix[alive], vector[None, :].astype(np.float32)])
        self._scopes[scope] = (matrix, [entries[i] for i in alive] + [(now + ttl_s, entry)])


@dataclass
class Lookup:
    """What a request was looked up by, so its answer is stored under the same."""

    kinds: tuple[str, ...]
    scope: str
    exact: str | None = None
    vector: np.ndarray | None = None
    semantic_scope: str | None = None


class ResponseCache:
    def __init__(
        self, settings: GatewayServiceSettings, http: aiohttp.ClientSession, metrics: GatewayMetrics, exact_store
    ) -> None:
        self.settings = settings
        self.http = http
        self.metrics = metrics
        self.exact_store = exact_store
        self.vectors = VectorStore(settings.cache_max_entries)

    async def lookup(
        self, key: KeyInfo, model: str, version: str, body: dict[str, Any]
    ) -> tuple[Entry | None, str | None, Lookup]:
        """(the cached answer, which cache had it, the lookup); a miss is (None, None, lookup)."""
        owner = f"team:{key.team}" if key.team else f"key:{key.id}"
        lookup = Lookup(tuple(k for k in KINDS if k in key.cache), f"{model}\x00{version}\x00{owner}")
        if "exact" in lookup.kinds:
            lookup.exact = hashlib.sha256(f"{lookup.scope}\x00{exact_key(body)}".encode()).hexdigest()
            raw = await self.exact_store.get(lookup.exact)
            if raw is not None:
                return self._hit("exact", Entry.loads(raw)), "exact", lookup
        if "semantic" in lookup.kinds:
            text, rest = semantic_parts(body)
            lookup.semantic_scope = f"{lookup.scope}\x00{rest}"
            lookup.vector = await self._embed(text)
            if lookup.vector is not None:
                found = self.vectors.search(
                    lookup.semantic_scope, lookup.vector, self.settings.semantic_cache_threshold
                )
                if found is not None:
                    return self._hit("semantic", found[0]), "semantic", lookup
        for kind in lookup.kinds:
            self.metrics.cache_requests.labels(kind=kind, result="miss").inc()
        return None, None, lookup

    def _hit(self, kind: str, entry: Entry) -> Entry:
        self.metrics.cache_requests.labels(kind=kind, result="hit").inc()
        self.metrics.cache_saved.labels(kind=kind).inc(entry.latency_s)
        return entry

    async def store(self, lookup: Lookup, entry: Entry) -> None:
        if lookup.exact is not None:
            await self.exact_store.put(lookup.exact, entry.dumps(), self.settings.cache_ttl_s)
        if lookup.vector is not None and lookup.semantic_scope is not None:
            self.vectors.add(lookup.semantic_scope, lookup.vector, entry, self.settings.cache_ttl_s)

    async def _embed(self, text: str) -> np.ndarray | None:
        """The text's unit vector from the RAG service's encoder; None (a miss) when it cannot be had."""
        url = f"{self.settings.rag_url}/v1/embeddings"
        body = {"model": self.settings.rag_embedding_model or "all-minilm-l6-v2", "input": [text]}
        try:
            async with self.http.post(url, json=body, timeout=aiohttp.ClientTimeout(total=10)) as response:
                if response.status != 200:
                    raise ValueError(f"HTTP {response.status}")
                vector = np.asarray((await response.json())["data"][0]["embedding"], dtype=np.float32)
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, IndexError) as exc:
            log.warning("semantic cache: no embedding (%s); served uncached", type(exc).__name__)
            return None
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else None
