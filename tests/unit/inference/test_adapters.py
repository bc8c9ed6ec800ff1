"""The adapter set of the inference service: following adapters' aliases in a real MLflow
registry, loading them into the engine, evicting the least recently used, and refusing an
adapter trained on another base. The engine's load and unload routes are a recording HTTP
transport here; tests/integration/test_adapters.py runs the same code against vLLM."""

from __future__ import annotations

import asyncio
import json
import logging
import re

import httpx
import pytest

from lathe.errors import ConflictError, ModelNotFoundError
from services.inference.adapters import AdapterSet
from services.inference.engine import EngineHandle, lora_args, vllm_env
from services.inference.metrics import InferenceMetrics
from services.inference.settings import InferenceServiceSettings

SERVED = "base/1"


class EngineRoutes:
    """vLLM's /v1/load_lora_adapter and /v1/unload_lora_adapter, recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append((request.url.path, json.loads(request.content)))
        return httpx.Response(200, text="Success")

    def loads(self) -> list[str]:
        return [body["lora_name"] for path, body in self.calls if path.endswith("/load_lora_adapter")]


def adapter_folder(root, name: str, base: str = SERVED, rank: int = 8):
    folder = root / name
    folder.mkdir(parents=True)
    config = {"base_model_name_or_path": f"models:/{base}", "r": rank, "peft_type": "LORA"}
    (folder / "adapter_config.json").write_text(json.dumps(config))
    (folder / "adapter_model.safetensors").write_bytes(b"weights of " + name.encode())
    return folder


def register(registry, tmp_path, name: str, base: str = SERVED, rank: int = 8, alias: str = "champion") -> str:
    folder = adapter_folder(tmp_path / "src" / f"{name}-{len(list(tmp_path.glob('src/*')))}", name, base, rank)
    return registry.register_folder(folder, name, alias=alias, tags={"lathe.base_model": base}).version


def make(registry, tmp_path, monkeypatch, adapters: list[str], **settings) -> tuple[AdapterSet, EngineRoutes]:
    monkeypatch.setenv("LATHE_HOME", str(tmp_path / "home"))
    config = InferenceServiceSettings(model_name="base", adapters=adapters, **settings)
    routes = EngineRoutes()
    http = httpx.AsyncClient(transport=httpx.MockTransport(routes))
    return AdapterSet(config, registry, InferenceMetrics.create(), http), routes


def handle() -> EngineHandle:
    return EngineHandle(version="1", base_url="http://engine", pid=None)


def test_the_least_recently_used_adapter_makes_room_and_is_logged(registry, tmp_path, monkeypatch, caplog):
    for name in ("a", "b", "c"):
        register(registry, tmp_path, name)
    adapters, routes = make(registry, tmp_path, monkeypatch, ["a", "b", "c"], max_loras=1, max_cpu_loras=2)
    engine = handle()

    async def scenario():
        await adapters.follow(engine, SERVED)  # preloads while there is room: a and b
        assert list(engine.adapters) == ["a", "b"]
        await adapters.ensure(engine, "a", SERVED)  # a is used: b is now the least recent
        with caplog.at_level(logging.WARNING, logger="services.inference.adapters"):
            await adapters.ensure(engine, "c", SERVED)
        assert list(engine.adapters) == ["a", "c"]

    asyncio.run(scenario())
    assert routes.loads() == ["a", "b", "c"]  # a was already loaded: no second load
    assert ("/v1/unload_lora_adapter", {"lora_name": "b"}) in routes.calls
    evicted = [r for r in caplog.records if r.getMessage() == "adapter unloaded"]
    assert len(evicted) == 1 and evicted[0].fields["adapter"] == "b"
    assert adapters.metrics.adapter_evictions.labels(adapter="b")._value.get() == 1


def test_a_moved_alias_reloads_that_adapter_in_place_from_the_new_version(registry, tmp_path, monkeypatch):
    register(registry, tmp_path, "a")
    register(registry, tmp_path, "b")
    adapters, routes = make(registry, tmp_path, monkeypatch, ["a", "b"])
    engine = handle()
    asyncio.run(adapters.follow(engine, SERVED))
    second = register(registry, tmp_path, "a")  # the alias moves to version 2
    routes.calls.clear()
    asyncio.run(adapters.follow(engine, SERVED))
    assert engine.adapters == {"a": second, "b": "1"}
    [(path, body)] = routes.calls  # b is not touched
    assert path == "/v1/load_lora_adapter" and body["lora_name"] == "a" and body["load_inplace"] is True
    assert body["lora_path"].endswith(f"/a/{second}")  # a new folder: no stale prefix-cache blocks
    assert adapters.metrics.adapter_loads.labels(adapter="a", outcome="reloaded")._value.get() == 1


def test_an_adapter_of_another_base_version_is_refused_in_one_line_and_never_loaded(registry, tmp_path, monkeypatch):
    register(registry, tmp_path, "old", base="base/7")
    register(registry, tmp_path, "wide", rank=64)
    adapters, routes = make(registry, tmp_path, monkeypatch, ["old", "wide"])
    engine = handle()
    asyncio.run(adapters.follow(engine, SERVED))  # the loop goes on past both
    assert routes.loads() == [] and engine.adapters == {}
    with pytest.raises(ConflictError) as refused:
        asyncio.run(adapters.ensure(engine, "old", SERVED))
    assert refused.value.status_code == 409
    assert refused.value.one_line() == (
        "adapter old: trained on base/7, but this server serves base/1; retrain it on the served version, "
        "or serve its base"
    )
    assert "rank 64 is above max_lora_rank (16)" in adapters.targets["wide"].problem
    assert adapters.metrics.adapter_loads.labels(adapter="old", outcome="refused")._value.get() == 1


def test_an_adapter_without_its_alias_is_a_404_and_unloaded_when_the_alias_goes(registry, tmp_path, monkeypatch):
    register(registry, tmp_path, "a")
    adapters, routes = make(registry, tmp_path, monkeypatch, ["a", "ghost"])
    engine = handle()
    asyncio.run(adapters.follow(engine, SERVED))
    with pytest.raises(ModelNotFoundError, match="adapter ghost is not served now"):
        asyncio.run(adapters.ensure(engine, "ghost", SERVED))
    registry.delete_alias("a", "champion")
    asyncio.run(adapters.follow(engine, SERVED))
    assert engine.adapters == {} and ("/v1/unload_lora_adapter", {"lora_name": "a"}) in routes.calls
    assert [a["problem"] is not None for a in adapters.describe(engine)] == [True, True]


def test_requests_for_one_adapter_share_its_single_load(registry, tmp_path, monkeypatch):
    """Requests that arrive while their adapter loads wait for that load; none fails, none loads twice."""
    register(registry, tmp_path, "a")
    adapters, routes = make(registry, tmp_path, monkeypatch, ["a"])
    engine = handle()

    async def scenario():
        adapters.targets["a"].version = "1"
        await asyncio.gather(*(adapters.ensure(engine, "a", SERVED) for _ in range(5)))

    asyncio.run(scenario())
    assert routes.loads() == ["a"]


def test_a_request_while_max_loras_other_adapters_are_busy_is_counted_as_queued(registry, tmp_path, monkeypatch):
    adapters, _ = make(registry, tmp_path, monkeypatch, ["a", "b", "c"], max_loras=2)
    assert [adapters.begin(name) for name in ("a", "a", "b")] == [False, False, False]  # a's second joins a's batch
    assert adapters.begin("c") is True  # a and b hold both adapter slots of a batch: c waits
    assert adapters.metrics.adapter_queued.labels(adapter="c")._value.get() == 1
    for name in ("a", "a", "c"):
        adapters.end(name)
    assert adapters.begin("c") is False  # only b is busy now
    assert adapters.metrics.adapter_inflight.labels(adapter="a")._value.get() == 0
    assert adapters.metrics.adapter_requests.labels(adapter="a")._value.get() == 2


def test_adapters_turn_on_vllms_runtime_lora_and_bad_lists_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("LATHE_HOME", str(tmp_path))
    settings = InferenceServiceSettings(model_name="base", adapters=["a", "b@staging"], max_loras=2, max_lora_rank=32)
    assert lora_args(settings) == ["--enable-lora", "--max-loras", "2", "--max-lora-rank", "32", "--max-cpu-loras", "2"]
    assert vllm_env(settings)["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert settings.adapter_aliases == {"a": "champion", "b": "staging"}
    plain = InferenceServiceSettings(model_name="base")
    assert lora_args(plain) == [] and "VLLM_ALLOW_RUNTIME_LORA_UPDATING" not in vllm_env(plain)
    monkeypatch.setenv("LATHE_INFERENCE_MAX_LORA_RANK", "8")  # as the environment gives it
    monkeypatch.setenv("LATHE_INFERENCE_ADAPTERS", '["a", "b"]')
    from_env = InferenceServiceSettings(model_name="base")
    assert from_env.max_lora_rank == 8 and from_env.adapters == ["a", "b"]
    for bad, field_message in [
        ({"adapters": ["base"]}, "'base' is the served model's own name"),
        ({"adapters": ["a", "a@x"]}, "a name is listed twice"),
        ({"adapters": ["a b"]}, "is not NAME or NAME@ALIAS"),
        ({"adapters": ["a"], "max_loras": 4, "max_cpu_loras": 2}, "max_cpu_loras: 2 is below max_loras (4)"),
        ({"max_lora_rank": 24}, "max_lora_rank: vLLM serves ranks 1, 8, 16"),
    ]:
        with pytest.raises(ValueError, match=re.escape(field_message)):
            InferenceServiceSettings(model_name="base", **bad)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "x", "echo": True, "logprobs": 1}, "echo"),
        ({"prompt": "x", "prompt_logprobs": 0}, "prompt_logprobs"),
        ({"messages": [], "prompt_logprobs": 1}, "prompt_logprobs"),
        ({"prompt": "x", "echo": True}, None),  # the prompt back, without its log-probabilities
        ({"prompt": "x", "logprobs": 1}, None),  # the sampled tokens' only
        ({"messages": [], "logprobs": True, "top_logprobs": 2}, None),
    ],
)
def test_prompt_log_probabilities_are_refused_beside_adapters_on_cpus(body, param):
    from lathe.errors import InvalidRequestError
    from services.inference.routes.openai import _refuse_prompt_logprobs

    if param is None:
        _refuse_prompt_logprobs(body)
        return
    with pytest.raises(InvalidRequestError) as refused:
        _refuse_prompt_logprobs(body)
    assert refused.value.param == param and refused.value.status_code == 400
