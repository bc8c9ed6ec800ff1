"""The swap logic of the inference service, against a real MLflow registry (SQLite store).

The engine here is a plug-in implementation of the ``Engine`` protocol that serves
nothing, so the test can hold requests open and watch the order of start, switch,
drain and stop; the integration tests run the same loop with real vLLM.
"""

import asyncio
import json

import pytest

from lathe.registry import ModelRegistry
from services.inference.engine import EngineHandle
from services.inference.metrics import InferenceMetrics
from services.inference.serving import AliasServer
from services.inference.settings import InferenceServiceSettings


class RecordingEngine:
    def __init__(self, model_dir, version, port):
        self.model_dir = model_dir
        self.handle = EngineHandle(version=version, base_url=f"http://127.0.0.1:{port}", pid=None)
        self.started = False
        self.stopped = False
        self.inflight_at_stop = None
        self.crashed = False

    async def start(self):
        await asyncio.sleep(0.05)
        self.started = True

    async def stop(self):
        self.inflight_at_stop = self.handle.inflight
        self.stopped = True

    def exited(self):
        return self.stopped or self.crashed


@pytest.fixture
def registry(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the SQLite store keeps artifacts under ./mlruns
    return ModelRegistry(f"sqlite:///{tmp_path / 'mlflow.db'}")


@pytest.fixture
def model_folder(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (folder / "tokenizer.json").write_text("{}")
    return folder


async def _until(predicate, timeout=20.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def test_alias_move_swaps_after_draining_the_old_engine(registry, model_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("LATHE_HOME", str(tmp_path / "home"))
    settings = InferenceServiceSettings(model_name="m", alias="champion", poll_interval_s=0.05, engine_port_base=18200)
    engines: list[RecordingEngine] = []

    def factory(model_dir, version, port):
        engines.append(RecordingEngine(model_dir, version, port))
        return engines[-1]

    v1 = registry.register_folder(model_folder, "m", alias="champion")
    metrics = InferenceMetrics.create()
    server = AliasServer(settings, registry, metrics, factory)

    async def scenario():
        loop_task = asyncio.create_task(server.run())
        try:
            await _until(lambda: server.version == v1.version)
            assert (engines[0].model_dir / "config.json").exists()  # downloaded from the registry
            held = server.acquire()  # a request in flight on v1

            v2 = registry.register_folder(model_folder, "m")
            registry.set_alias("m", "champion", v2.version)
            await _until(lambda: server.version == v2.version)

            new = server.acquire()
            assert new.version == v2.version  # new requests go to the new engine at once
            await asyncio.sleep(0.3)
            assert not engines[0].stopped  # the old one waits for its request
            server.release(held)
            await _until(lambda: engines[0].stopped)
            assert engines[0].inflight_at_stop == 0
            server.release(new)

            engines[1].crashed = True  # an engine that exits is replaced
            await _until(lambda: len(engines) == 3 and server.healthy())
            assert engines[2].handle.version == v2.version
        finally:
            loop_task.cancel()
            await asyncio.gather(loop_task, return_exceptions=True)
            await server.shutdown()

    asyncio.run(scenario())
    assert server.swaps == 3
    assert metrics.engine_restarts.labels(model="m")._value.get() == 1
    assert metrics.model_version.labels(model="m", alias="champion")._value.get() == 2.0


def test_no_engine_means_a_clear_503(registry, tmp_path, monkeypatch):
    from lathe.errors import EngineUnavailableError

    monkeypatch.setenv("LATHE_HOME", str(tmp_path / "home"))
    settings = InferenceServiceSettings(model_name="m")
    server = AliasServer(settings, registry, InferenceMetrics.create(), RecordingEngine)
    with pytest.raises(EngineUnavailableError) as info:
        server.acquire()
    assert info.value.status_code == 503
    assert "starting" in info.value.message
