"""Real vLLM behind the inference service, driven by the official `openai` client.

The order matters and is kept: the hot swap runs after the plain checks, and the
registry outage last, because each changes the served version or the registry.
"""

import json
import re
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lathe.assets import BASE_MODEL_NAME
from lathe.registry import ModelRegistry
from lathe.supervisor import pid_alive

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def client(platform):
    return openai.OpenAI(base_url=platform.inference_url + "/v1", api_key="unused", max_retries=0, timeout=120)


def test_chat_completion_answers(client):
    response = client.chat.completions.create(model=BASE_MODEL_NAME, messages=QUESTION, max_tokens=24, temperature=0)
    answer = response.choices[0].message.content
    assert "Paris" in answer
    assert response.usage.completion_tokens > 0
    assert response.model == BASE_MODEL_NAME


def test_chat_completion_streams_chunk_by_chunk(client):
    stream = client.chat.completions.create(
        model=BASE_MODEL_NAME, messages=QUESTION, max_tokens=24, temperature=0, stream=True
    )
    pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 3  # many chunks, not one buffered blob
    assert "Paris" in "".join(pieces)


def test_completions_and_models_endpoints(client):
    text = client.completions.create(model=BASE_MODEL_NAME, prompt="The capital of France is", max_tokens=8)
    assert text.choices[0].text
    models = client.models.list()
    assert [m.id for m in models.data] == [BASE_MODEL_NAME]
    assert models.data[0].model_extra["lathe"]["version"] == "1"


def test_errors_come_back_in_openai_shape(platform):
    response = httpx.post(
        platform.inference_url + "/v1/chat/completions",
        json={"model": "not-served", "messages": QUESTION},
        headers={"x-request-id": "it-42"},
        timeout=30,
    )
    assert response.status_code == 404
    assert set(response.json()["error"]) >= {"message", "type", "code"}
    assert response.headers["x-request-id"] == "it-42"


def test_metrics_expose_lathe_and_vllm_series(platform):
    text = httpx.get(platform.inference_url + "/metrics", timeout=10).text
    assert 'lathe_inference_model_version{alias="champion",model="smollm2-135m-instruct"} 1.0' in text
    assert "lathe_inference_swap_duration_seconds_count" in text
    assert "vllm:" in text  # vLLM's own metrics ride along
    assert "lathe_inference_requests_total" in text


def test_gateway_fronts_vllm_for_any_openai_client(platform):
    """`lathe up` puts the gateway in front of the inference service; `lathe chat` uses it."""
    created = platform.lathe("keys", "create", "it-user", "--tpm", "100000", "--json")
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)["key"]
    via_gateway = openai.OpenAI(base_url=platform.gateway_url + "/v1", api_key=key, max_retries=0, timeout=120)
    reply = via_gateway.chat.completions.create(model=BASE_MODEL_NAME, messages=QUESTION, max_tokens=24, temperature=0)
    assert "Paris" in reply.choices[0].message.content
    pieces = [
        c.choices[0].delta.content
        for c in via_gateway.chat.completions.create(
            model=BASE_MODEL_NAME, messages=QUESTION, max_tokens=24, temperature=0, stream=True
        )
        if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) > 3 and "Paris" in "".join(pieces)
    usage = json.loads(platform.lathe("keys", "usage", "it-user", "--json").stdout)
    assert usage["requests"] == 2 and usage["total_tokens"] > 2 * 37  # the real prompt tokens, as vLLM counted

    chat = platform.lathe("chat", "What is the capital of France?", "--json")
    assert chat.returncode == 0, chat.stderr
    answer = json.loads(chat.stdout)
    assert "Paris" in answer["answer"] and answer["model"] == BASE_MODEL_NAME
    assert answer["usage"]["completion_tokens"] > 0 and answer["ttft_s"] > 0  # --json streams too


def test_a_small_key_admits_exactly_the_requests_that_fit(platform):
    """The gateway reserves the prompt's real token count (the served version's tokenizer and
    chat template) plus max_tokens: a key with exactly that much room is admitted, and one
    token less is refused. By bytes, "Hi" with max_tokens 10 would reserve 108."""

    def gateway(tpm: int) -> openai.OpenAI:
        key = platform.create_key(f"it-fit-{tpm}-{time.monotonic_ns()}", "--tpm", str(tpm))
        return openai.OpenAI(base_url=platform.gateway_url + "/v1", api_key=key, max_retries=0, timeout=120)

    hi = [{"role": "user", "content": "Hi"}]
    counted = gateway(100_000).chat.completions.create(model=BASE_MODEL_NAME, messages=hi, max_tokens=10)
    prompt = counted.usage.prompt_tokens  # as vLLM counted it
    assert prompt + 10 < 108
    fits = gateway(prompt + 10).chat.completions.create(model=BASE_MODEL_NAME, messages=hi, max_tokens=10)
    assert fits.usage.prompt_tokens == prompt
    with pytest.raises(openai.RateLimitError):
        gateway(prompt + 9).chat.completions.create(model=BASE_MODEL_NAME, messages=hi, max_tokens=10)

    text = "The quick brown fox"
    completed = gateway(100_000).completions.create(model=BASE_MODEL_NAME, prompt=text, max_tokens=4)
    room = completed.usage.prompt_tokens + 4
    assert gateway(room).completions.create(model=BASE_MODEL_NAME, prompt=text, max_tokens=4).choices
    with pytest.raises(openai.RateLimitError):
        gateway(room - 1).completions.create(model=BASE_MODEL_NAME, prompt=text, max_tokens=4)
    metrics = httpx.get(platform.url("LATHE_GATEWAY_METRICS_PORT") + "/metrics", timeout=10).text
    exact = sum(
        sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "lathe_gateway_prompt_counts_total"
        and sample.labels == {"model": BASE_MODEL_NAME, "method": "tokenizer"}
    )
    assert exact >= 6, "every request of a token-limited key was counted exactly"


def test_hot_swap_under_steady_traffic_loses_no_request(platform, client):
    registry = ModelRegistry(platform.mlflow_uri)
    old_pid = httpx.get(platform.inference_url + "/health", timeout=5).json()["engine_pid"]
    source = registry.download(BASE_MODEL_NAME, "1", platform.home / "test-models")
    v2 = registry.register_folder(source, BASE_MODEL_NAME, description="v2 for the swap test")

    results = {"ok": 0, "errors": [], "versions": set()}
    stop = threading.Event()

    def steady_stream():
        while not stop.is_set():
            try:
                stream = client.chat.completions.create(
                    model=BASE_MODEL_NAME, messages=QUESTION, max_tokens=12, temperature=0, stream=True
                )
                text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
                assert text
                results["ok"] += 1
            except Exception as exc:  # every failure is the finding
                results["errors"].append(repr(exc))

    workers = [threading.Thread(target=steady_stream) for _ in range(3)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(3)
        promoted = platform.lathe("models", "promote", BASE_MODEL_NAME, "--version", v2.version, "--json")
        assert promoted.returncode == 0, promoted.stderr
        deadline = time.monotonic() + 600
        while True:
            health = httpx.get(platform.inference_url + "/health", timeout=5).json()
            if health["version"] == v2.version and health["detail"] == f"serving version {v2.version}":
                break
            assert time.monotonic() < deadline, f"no swap: {health}"
            time.sleep(1)
        ok_at_switch = results["ok"]
        time.sleep(5)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=120)
    assert results["errors"] == []
    assert results["ok"] > ok_at_switch > 0
    assert health["engine_pid"] != old_pid
    # The old engine is stopped once drained; its exit may still be under way.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and pid_alive(old_pid):
        time.sleep(0.5)
    assert not pid_alive(old_pid)
    metrics = httpx.get(platform.inference_url + "/metrics", timeout=10).text
    assert 'lathe_inference_swaps_total{model="smollm2-135m-instruct",outcome="success"} 2.0' in metrics


def _registry_retry_delays(log: Path, offset: int) -> list[float]:
    """The waits the inference service logged between registry attempts, from ``offset`` on."""
    delays = []
    with open(log, "rb") as handle:
        handle.seek(offset)
        for line in handle:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("msg") == "registry unavailable; retrying":
                delays.append(float(entry["retry_in_s"]))
    return delays


def _registry_errors(platform) -> float:
    text = httpx.get(platform.inference_url + "/metrics", timeout=10).text
    match = re.search(r'^lathe_inference_registry_errors_total\{model="[^"]+"\} (\S+)$', text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@pytest.mark.fault
def test_registry_outage_keeps_serving_and_status_says_so(platform, client):
    from lathe.supervisor import stop_pid

    served = httpx.get(platform.inference_url + "/health", timeout=5).json()["version"]
    inference = platform.component("inference")
    log = Path(inference["log"])
    offset, errors_before = log.stat().st_size, _registry_errors(platform)
    stop_pid(platform.component("mlflow")["pid"])

    response = client.chat.completions.create(model=BASE_MODEL_NAME, messages=QUESTION, max_tokens=8)
    assert response.choices[0].message.content
    deadline = time.monotonic() + 30
    while httpx.get(platform.inference_url + "/health", timeout=5).json()["registry"] != "unreachable":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    health = httpx.get(platform.inference_url + "/health", timeout=5).json()
    assert health["status"] == "ok" and health["version"] == served

    # The registry is retried with backoff: each wait is twice the last (1 s, 2 s, 4 s, ...).
    deadline = time.monotonic() + 30
    while len(delays := _registry_retry_delays(log, offset)) < 3:
        assert time.monotonic() < deadline, f"retries logged: {delays}"
        time.sleep(0.5)
    assert delays[:3] == [1.0, 2.0, 4.0], delays
    assert _registry_errors(platform) >= errors_before + 3
    after_retries = client.chat.completions.create(model=BASE_MODEL_NAME, messages=QUESTION, max_tokens=8)
    assert after_retries.choices[0].message.content  # still serving the version it had

    status = platform.lathe("status", "--json")
    assert status.returncode == 1
    components = {c["name"]: c for c in json.loads(status.stdout)["components"]}
    assert components["mlflow"]["state"] == "stopped"  # what is down
    assert components["inference"]["state"] == "healthy"  # and what still serves, saying why it cannot follow
    detail = components["inference"]["detail"]
    assert f"= v{served}" in detail and "registry unreachable" in detail

    repaired = platform.lathe("up", "--json")  # brings back only what is missing
    assert repaired.returncode == 0, repaired.stderr
    assert platform.component("inference")["pid"] == inference["pid"]
    assert platform.component("mlflow")["state"] == "healthy"
    deadline = time.monotonic() + 90  # the next retry finds it: at most one backoff step away
    while httpx.get(platform.inference_url + "/health", timeout=5).json()["registry"] != "ok":
        assert time.monotonic() < deadline, "the inference service never saw the registry come back"
        time.sleep(1)
