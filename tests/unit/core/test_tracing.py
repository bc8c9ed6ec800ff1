"""Tracing through the services as they run: a real gateway, RAG service (real MiniLM) and
agent service on ports of their own, each with tracing on, sharing one in-memory span
exporter. One chat, one RAG query and one agent run must each be one connected trace that
reaches the backend, which receives a W3C ``traceparent`` as vLLM would."""

from __future__ import annotations

import contextlib
from typing import ClassVar

import httpx
import pytest
import yaml

from lathe import tracing
from lathe.settings import TracingSettings
from tests.support.http_backends import JsonHandler, chat_completion, free_port, serve, serve_app

ADMIN_KEY = "admin-" + "t" * 24
MODEL = "smollm2-135m-instruct"


class _Backend(JsonHandler):
    """The model server: answers every chat in the agent's text protocol, and keeps the traceparent."""

    traceparents: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.read_json()
        type(self).traceparents.append(self.headers.get("traceparent", ""))
        usage = {"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16}
        self.send_json(chat_completion("Thought: I know.\nFinal Answer: len() counts items [1].", MODEL, usage))


@pytest.fixture(scope="module")
def spans():
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # once per process: install() keeps a provider it finds
    yield exporter
    tracing._enabled = False  # the rest of the suite runs untraced


@pytest.fixture(scope="module")
def platform(tmp_path_factory, spans):
    from services.agent.app import create_app as create_agent
    from services.agent.settings import AgentServiceSettings
    from services.gateway.app import create_app as create_gateway
    from services.gateway.settings import GatewayServiceSettings
    from services.rag.app import create_app as create_rag
    from services.rag.settings import RagServiceSettings

    home = tmp_path_factory.mktemp("traced")
    on = TracingSettings(enabled=True)
    ports = {name: free_port() for name in ("gateway", "rag", "agent")}
    url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    with contextlib.ExitStack() as stack:
        backend = stack.enter_context(serve(_Backend))
        routes = {"models": {MODEL: {"backends": [{"url": backend}]}}}
        (home / "routes.yaml").write_text(yaml.safe_dump(routes))
        rag = RagServiceSettings(LATHE_HOME=str(home / "rag"), gateway_url=url["gateway"], tracing=on)
        agent = AgentServiceSettings(LATHE_HOME=str(home / "agent"), gateway_url=url["gateway"], tracing=on)
        gateway = GatewayServiceSettings(
            LATHE_HOME=str(home / "gw"), admin_key=ADMIN_KEY, routes_file=str(home / "routes.yaml"),
            rag_url=url["rag"], agent_url=url["agent"], exact_prompt_count=False, health_interval_s=60, tracing=on,
        )  # fmt: skip
        stack.enter_context(serve_app(create_rag(rag), ports["rag"]))
        stack.enter_context(serve_app(create_agent(agent), ports["agent"]))
        stack.enter_context(serve_app(create_gateway(gateway), ports["gateway"]))
        admin = {"authorization": f"Bearer {ADMIN_KEY}"}
        created = httpx.post(url["gateway"] + "/admin/keys", json={"name": "traced"}, headers=admin, timeout=30)
        assert created.status_code == 201, created.text
        yield url["gateway"], {"authorization": f"Bearer {created.json()['key']}"}


def _one_trace(spans, call) -> list:
    """Run ``call``; the spans it made, once they all share one trace."""
    spans.clear()
    _Backend.traceparents = []
    call()
    finished = spans.get_finished_spans()
    assert finished, "no span was recorded"
    trace_ids = {s.context.trace_id for s in finished}
    assert len(trace_ids) == 1, f"{len(trace_ids)} traces: {[s.name for s in finished]}"
    (trace_id,) = trace_ids
    ids = {s.context.span_id for s in finished}
    roots = [s for s in finished if s.parent is None]
    assert len(roots) == 1, [s.name for s in roots]
    orphans = [s.name for s in finished if s.parent is not None and s.parent.span_id not in ids]
    assert not orphans, f"spans whose parent is in no service: {orphans}"
    # The backend (vLLM) received the trace, as a child of a span the gateway recorded.
    assert _Backend.traceparents, "the backend was not called"
    for header in _Backend.traceparents:
        _, trace_hex, parent_hex, _ = header.split("-")
        assert int(trace_hex, 16) == trace_id and int(parent_hex, 16) in ids
    return finished


def test_a_chat_is_one_trace_from_the_gateway_to_the_backend(platform, spans):
    gateway, key = platform
    body = {"model": MODEL, "messages": [{"role": "user", "content": "What does len() do?"}], "max_tokens": 16}

    def chat():
        assert httpx.post(gateway + "/v1/chat/completions", json=body, headers=key, timeout=60).status_code == 200

    finished = _one_trace(spans, chat)
    client = [s for s in finished if s.name == "POST /v1/chat/completions" and s.kind.name == "CLIENT"]
    assert client and client[0].attributes["lathe.url"].startswith("http://127.0.0.1:")


def test_a_rag_query_is_one_trace_through_the_rag_service_and_back_through_the_gateway(platform, spans):
    gateway, key = platform
    document = {"id": "len", "text": "len(s) returns the number of items in a container such as a list.",
                "source": "builtins.rst"}  # fmt: skip
    ingested = httpx.post(gateway + "/v1/rag/collections/docs/documents", json={"documents": [document]},
                          headers=key, timeout=60)  # fmt: skip
    assert ingested.status_code == 200, ingested.text

    def query():
        asked = {"query": "What does len(s) return for a list?", "collection": "docs"}
        answer = httpx.post(gateway + "/v1/rag/query", json=asked, headers=key, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json()["grounded"], answer.text  # it generated, through the gateway

    finished = _one_trace(spans, query)
    server_paths = [s.attributes.get("url.path") for s in finished if s.kind.name == "SERVER"]
    # The gateway's relay, the RAG service's query, and the gateway again for the generation.
    assert server_paths.count("/v1/rag/query") == 2 and "/v1/chat/completions" in server_paths, server_paths


def test_an_agent_run_is_one_trace_through_the_agent_service(platform, spans):
    gateway, key = platform

    def run():
        answer = httpx.post(gateway + "/v1/agents/assistant/runs", json={"input": "What does len() do?"},
                            headers=key, timeout=60)  # fmt: skip
        assert answer.status_code == 200, answer.text

    finished = _one_trace(spans, run)
    server_paths = [s.attributes.get("url.path") for s in finished if s.kind.name == "SERVER"]
    assert server_paths.count("/v1/agents/assistant/runs") == 2 and "/v1/chat/completions" in server_paths


def test_tracing_is_off_by_default_and_its_endpoint_is_checked():
    assert TracingSettings().enabled is False
    with pytest.raises(ValueError, match="otlp_endpoint"):
        TracingSettings(enabled=True, otlp_endpoint="collector:4318")
