"""Locust scenarios for Lathe: every request through the gateway with a Lathe API key.

    python -m tests.load.run --scenario mix --users 4 --duration 60s   # keys, corpus, summary: the usual way
    locust -f tests/load/locustfile.py --headless -u 4 -r 2 -t 60s MixUser \\
        --host http://127.0.0.1:8000 --api-key lk-… [--limited-key lk-…] [--user-rate 0.2]

Scenarios, each a user class and a tag (``--tags chat`` keeps only that task of MixUser):

- ``chat``        ChatUser        non-streamed chat completion, small ``max_tokens``
- ``stream``      StreamUser      streamed chat completion; the whole stream is the request
                                  (``POST stream``) and its first token a metric of its own
                                  (``TTFT stream``); an SSE error event or a stream that ends
                                  without ``[DONE]`` is a failure
- ``embeddings``  EmbeddingsUser  ``/v1/embeddings`` (MiniLM, served by the RAG service)
- ``rag``         RagUser         ``/v1/rag/query`` on the small load collection (tests/load/corpus.py)
- ``agent``       AgentUser       ``/v1/agents/{name}/runs`` forced to the calculator: two model calls
- ``mix``         MixUser         all of the above by weight, plus a trickle of chats on a low-rpm
                                  key (``--limited-key``) whose 429s are expected

Options come from Locust's command line or the environment (``LATHE_LOAD_*``, see
``_options``). ``--user-rate R`` paces each user at R tasks per second (constant
throughput: a fixed offered rate of users × R while responses come back in time);
0 runs tasks back to back. Every failure's message starts with its kind
(``rate_limited``, ``http_4xx``, ``http_5xx``, ``timeout``, ``connection``,
``stream_error``, ``stream_incomplete``, ``bad_response``); ``--samples-file`` writes
one CSV row per request (end time, type, name, ms, kind) for the runner's per-minute
figures.
"""

from __future__ import annotations

import json
import random
import time

from locust import FastHttpUser, constant_throughput, events, tag, task
from locust.exception import RescheduleTaskImmediately

CHAT_PROMPTS = [
    "In one sentence, what is a language model?",
    "Name three colours of the rainbow.",
    "What is the capital of France?",
    "Give one tip for writing clear code.",
    "What does a compiler do?",
    "Say hello in Spanish.",
    "Why is the sky blue? Answer briefly.",
    "What is 2 plus 2?",
]
EMBEDDING_TEXTS = [
    "The gateway checks every request against its key's quota.",
    "Qdrant stores dense and sparse vectors side by side.",
    "MiniLM turns a sentence into 384 numbers.",
    "Ray runs the training jobs on the cluster.",
    "A hot swap moves traffic to the new model version.",
    "Prometheus scrapes every component's metrics.",
]
# About the documents of tests/load/corpus.py, so retrieval finds them and the model answers.
RAG_QUESTIONS = [
    "What happens when a request does not fit a key's quota?",
    "How does the inference service swap to a new model version?",
    "Which file formats can the RAG service read?",
    "What does ingesting an unchanged document again write?",
]
FAILURE_KINDS = (
    "rate_limited",
    "http_4xx",
    "http_5xx",
    "timeout",
    "connection",
    "stream_error",
    "stream_incomplete",
    "bad_response",
)


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    group = parser.add_argument_group("Lathe")
    group.add_argument("--api-key", env_var="LATHE_LOAD_API_KEY", default="", help="Gateway API key")
    group.add_argument(
        "--limited-key", env_var="LATHE_LOAD_LIMITED_KEY", default="", help="A low-rpm key (MixUser): 429s expected"
    )
    group.add_argument("--model", env_var="LATHE_LOAD_MODEL", default="smollm2-135m-instruct")
    group.add_argument("--embedding-model", env_var="LATHE_LOAD_EMBEDDING_MODEL", default="all-minilm-l6-v2")
    group.add_argument("--collection", env_var="LATHE_LOAD_COLLECTION", default="lathe-load")
    group.add_argument("--agent", env_var="LATHE_LOAD_AGENT", default="assistant")
    group.add_argument("--max-tokens", env_var="LATHE_LOAD_MAX_TOKENS", type=int, default=24)
    group.add_argument(
        "--user-rate", env_var="LATHE_LOAD_USER_RATE", type=float, default=0.0, help="Tasks/s per user (0: no wait)"
    )
    group.add_argument("--samples-file", env_var="LATHE_LOAD_SAMPLES", default="", help="CSV row per request")


_samples = {"file": None}


@events.init.add_listener
def _open_samples(environment, **_) -> None:
    options = environment.parsed_options
    if options is None:
        return
    if not options.api_key:
        raise SystemExit("locustfile: set --api-key or LATHE_LOAD_API_KEY (lathe keys create NAME --json)")
    if options.samples_file:
        _samples["file"] = open(options.samples_file, "w", buffering=1 << 16)  # noqa: SIM115 - closed on quit
        _samples["file"].write("end,type,name,ms,kind\n")


@events.request.add_listener
def _record(request_type, name, response_time, exception, start_time=None, **_) -> None:
    out = _samples["file"]
    if out is None:
        return
    end = (start_time or time.time() - response_time / 1000) + response_time / 1000
    out.write(f"{end:.3f},{request_type},{name},{response_time:.1f},{failure_kind(exception)}\n")


@events.quitting.add_listener
def _close_samples(**_) -> None:
    if _samples["file"] is not None:
        _samples["file"].close()
        _samples["file"] = None


def failure_kind(exception) -> str:
    """'' for a success; else the kind its message starts with ('other' for anything unforeseen)."""
    if exception is None:
        return ""
    kind = str(exception).split(":", 1)[0].strip()
    return kind if kind in FAILURE_KINDS else "other"


class LatheUser(FastHttpUser):
    """A gateway client; subclasses pick the tasks. Abstract: Locust never runs it itself."""

    abstract = True
    # Streams and agent runs take seconds on the CPU; Locust's default 60 s would cut the slow tail.
    network_timeout = 120.0
    connection_timeout = 10.0

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.options = options
        self.auth = {"authorization": f"Bearer {options.api_key}"}
        self.limited_auth = {"authorization": f"Bearer {options.limited_key}"} if options.limited_key else None

    def wait_time(self) -> float:
        rate = self.environment.parsed_options.user_rate
        return constant_throughput(rate)(self) if rate > 0 else 0.0

    # -- the scenarios --------------------------------------------------------------------
    def chat(self, name: str = "chat", headers: dict | None = None, max_tokens: int | None = None) -> None:
        body = {
            "model": self.options.model,
            "messages": [{"role": "user", "content": random.choice(CHAT_PROMPTS)}],
            "max_tokens": max_tokens or self.options.max_tokens,
        }
        with self.client.post(
            "/v1/chat/completions", json=body, headers=headers or self.auth, name=name, catch_response=True
        ) as response:
            judge(response, lambda data: None if data.get("choices") else "no choices in the completion")

    def stream(self) -> None:
        body = {
            "model": self.options.model,
            "messages": [{"role": "user", "content": random.choice(CHAT_PROMPTS)}],
            "max_tokens": self.options.max_tokens,
            "stream": True,
        }
        headers = {**self.auth, "accept": "text/event-stream", "accept-encoding": "identity"}
        started_at, started = time.time(), time.perf_counter()
        with self.client.post(
            "/v1/chat/completions", json=body, headers=headers, name="stream", stream=True, catch_response=True
        ) as response:
            if response.status_code != 200:
                judge(response)
                return
            first_token, problem = read_chat_stream(response)
            # Locust timed the headers only (stream=True): the request is the whole stream.
            response.request_meta["response_time"] = (time.perf_counter() - started) * 1000
            if problem:
                response.failure(problem)
                return
            response.success()
        self.environment.events.request.fire(
            request_type="TTFT",
            name="stream",
            response_time=(first_token - started) * 1000,
            response_length=0,
            exception=None,
            context={},
            start_time=started_at,
        )

    def embeddings(self) -> None:
        texts = random.sample(EMBEDDING_TEXTS, random.randint(1, 4))
        body = {"model": self.options.embedding_model, "input": texts, "encoding_format": "float"}

        def check(data: dict) -> str | None:
            vectors = data.get("data") or []
            if len(vectors) != len(texts) or not all(v.get("embedding") for v in vectors):
                return f"{len(vectors)} vectors for {len(texts)} inputs"
            return None

        with self.client.post(
            "/v1/embeddings", json=body, headers=self.auth, name="embeddings", catch_response=True
        ) as response:
            judge(response, check)

    def rag(self) -> None:
        body = {
            "query": random.choice(RAG_QUESTIONS),
            "collection": self.options.collection,
            "max_tokens": self.options.max_tokens,
        }

        def check(data: dict) -> str | None:
            if "answer" not in data:
                return "no answer in the reply"
            # The questions are about the collection: "I don't know" means retrieval missed.
            return None if data.get("grounded") else "answer not grounded in the collection"

        with self.client.post("/v1/rag/query", json=body, headers=self.auth, name="rag", catch_response=True) as r:
            judge(r, check)

    def agent(self) -> None:
        a, b = random.randint(2, 99), random.randint(2, 99)
        body = {"input": f"What is {a} * {b}?", "tool_choice": "calculator", "stream": False}

        def check(data: dict) -> str | None:
            if data.get("status") != "completed":
                return f"agent run {data.get('status')}"
            # The run completed with the calculator called and its result handed back. Whether the
            # 135M model wrote a valid expression with both numbers (outcome ok, or an error the
            # tool reports) is its accuracy, not the platform's behaviour under load.
            steps = data.get("steps", [])
            if not any(s.get("type") == "tool_result" and s.get("tool") == "calculator" for s in steps):
                return "no calculator result"
            return None

        with self.client.post(
            f"/v1/agents/{self.options.agent}/runs", json=body, headers=self.auth, name="agent", catch_response=True
        ) as response:
            judge(response, check)

    def limited_chat(self) -> None:
        if self.limited_auth is None:
            raise RescheduleTaskImmediately()
        self.chat(name="chat (low-rpm key)", headers=self.limited_auth, max_tokens=8)


def judge(response, check=None) -> None:
    """Mark a ``catch_response`` response: the kind of a failure first, then what was seen."""
    status = response.status_code
    error = getattr(response, "error", None)
    if status == 0 or (error is not None and status < 400):
        kind = "timeout" if "timeout" in type(error).__name__.lower() or "timed out" in str(error) else "connection"
        response.failure(f"{kind}: {type(error).__name__}")
    elif status == 429:
        response.failure("rate_limited: HTTP 429")
    elif status >= 400:
        response.failure(f"http_{status // 100}xx: HTTP {status} {_error_code(response)}")
    elif check is not None:
        try:
            problem = check(response.json())
        except ValueError:
            problem = "the reply is not JSON"
        if problem:
            response.failure(f"bad_response: {problem}")
        else:
            response.success()
    else:
        response.success()


def read_chat_stream(response) -> tuple[float, str | None]:
    """Read an OpenAI SSE stream to its end: (when the first token came, the failure or None)."""
    # geventhttpclient's readline returns each line as it arrives; read(n) would wait for n bytes.
    raw = response._response
    first_token = None
    event = None
    while True:
        try:
            line = raw.readline(b"\n")
        except Exception as exc:  # a socket timeout or reset in the middle of the stream
            kind = "timeout" if "timeout" in type(exc).__name__.lower() else "connection"
            return first_token or time.perf_counter(), f"{kind}: {type(exc).__name__} mid-stream"
        if not line:
            return first_token or time.perf_counter(), "stream_incomplete: the stream ended without [DONE]"
        text = line.decode("utf-8", "replace").strip()
        if text.startswith("event:"):
            event = text[6:].strip()
            continue
        if not text.startswith("data:"):
            continue
        payload = text[5:].strip()
        if payload == "[DONE]":
            if first_token is None:
                return time.perf_counter(), "bad_response: the stream carried no token"
            return first_token, None
        try:
            data = json.loads(payload)
        except ValueError:
            return first_token or time.perf_counter(), "bad_response: an SSE event that is not JSON"
        if event == "error" or (isinstance(data, dict) and "error" in data):
            code = (data.get("error") or {}).get("code") if isinstance(data, dict) else None
            return first_token or time.perf_counter(), f"stream_error: {code or 'error event'}"
        choices = data.get("choices") if isinstance(data, dict) else None
        if first_token is None and choices and (choices[0].get("delta") or {}).get("content"):
            first_token = time.perf_counter()


def _error_code(response) -> str:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return ""


class ChatUser(LatheUser):
    @tag("chat")
    @task
    def chat_task(self) -> None:
        self.chat()


class StreamUser(LatheUser):
    @tag("stream")
    @task
    def stream_task(self) -> None:
        self.stream()


class EmbeddingsUser(LatheUser):
    @tag("embeddings")
    @task
    def embeddings_task(self) -> None:
        self.embeddings()


class RagUser(LatheUser):
    @tag("rag")
    @task
    def rag_task(self) -> None:
        self.rag()


class AgentUser(LatheUser):
    @tag("agent")
    @task
    def agent_task(self) -> None:
        self.agent()


class MixUser(LatheUser):
    """Weights: requests per 13 tasks. Embeddings are cheap; agent runs make two model calls."""

    @tag("chat")
    @task(3)
    def chat_task(self) -> None:
        self.chat()

    @tag("stream")
    @task(3)
    def stream_task(self) -> None:
        self.stream()

    @tag("embeddings")
    @task(4)
    def embeddings_task(self) -> None:
        self.embeddings()

    @tag("rag")
    @task(1)
    def rag_task(self) -> None:
        self.rag()

    @tag("agent")
    @task(1)
    def agent_task(self) -> None:
        self.agent()

    @tag("limited")
    @task(1)
    def limited_task(self) -> None:
        self.limited_chat()
