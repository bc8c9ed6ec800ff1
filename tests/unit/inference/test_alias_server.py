"""The swap logic of the inference service, against a real MLflow registry (SQLite store).

The engine here is a plug-in implementation of the ``Engine`` protocol that serves
nothing, so the test can hold requests open and watch the order of start, switch,
drain and stop; the integration tests run the same loop with real vLLM.
"""

import asyncio
import json

import pytest

from lathe.errors import EngineUnavailableError, RegistryUnavailableError
from services.inference.alias_server import AliasServer
from services.inference.engine import EngineHandle
from services.inference.metrics import InferenceMetrics
from services.inference.routes.health import health as health_route
from services.inference.settings import InferenceServiceSettings


class RecordingEngine:
    def __init__(self, model_dir, version, port):
        self.model_dir = model_dir
        self.handle = EngineHandle(version=version, base_url=f"http://127.0.0.1:{port}", pid=None)
        self.started = False
        self.stopped = False
        self.inflight_at_stop = None
        self.crashed = False
        self.returncode = None

    async def start(self):
        await asyncio.sleep(0.05)
        self.started = True

    async def stop(self):
        self.inflight_at_stop = self.handle.inflight
        self.stopped = True

    def exited(self):
        return self.stopped or self.crashed


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
    settings = InferenceServiceSettings(
        model_name="m", alias="champion", poll_interval_s=0.05, engine_check_interval_s=0.05, engine_port_base=18200
    )
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

            engines[1].crashed = True  # an engine that exits is replaced, from the same folder
            await _until(lambda: len(engines) == 3 and server.healthy())
            assert engines[2].handle.version == v2.version and engines[2].model_dir == engines[1].model_dir
        finally:
            loop_task.cancel()
            await asyncio.gather(loop_task, return_exceptions=True)
            await server.shutdown()

    asyncio.run(scenario())
    assert server.swaps == 2 and server.restarts == 1  # a restart is not a swap
    assert metrics.engine_restarts.labels(model="m")._value.get() == 1
    assert metrics.model_version.labels(model="m", alias="champion")._value.get() == 2.0


def test_no_engine_means_a_clear_503(registry, tmp_path, monkeypatch):
    monkeypatch.setenv("LATHE_HOME", str(tmp_path / "home"))
    settings = InferenceServiceSettings(model_name="m")
    server = AliasServer(settings, registry, InferenceMetrics.create(), RecordingEngine)
    with pytest.raises(EngineUnavailableError) as info:
        server.acquire()
    assert info.value.status_code == 503
    assert "starting" in info.value.message


class Unreachable:
    """The real registry behind a switch that takes it down."""

    def __init__(self, registry):
        self.registry = registry
        self.down = False

    def __getattr__(self, name):
        if self.down:
            raise RegistryUnavailableError("model registry at http://127.0.0.1:9 is unreachable (ConnectError)")
        return getattr(self.registry, name)


@pytest.mark.fault
def test_an_engine_that_exits_restarts_from_its_folder_with_the_registry_down(
    registry, model_folder, tmp_path, monkeypatch, caplog
):
    monkeypatch.setenv("LATHE_HOME", str(tmp_path / "home"))
    settings = InferenceServiceSettings(
        model_name="m", alias="champion", poll_interval_s=0.05, engine_check_interval_s=0.05, engine_port_base=18300
    )
    engines: list[RecordingEngine] = []
    restart_may_finish = None

    class SlowToRestart(RecordingEngine):
        async def start(self):
            if engines and engines[0] is not self:
                await restart_may_finish.wait()
            await super().start()

    def factory(model_dir, version, port):
        engines.append(SlowToRestart(model_dir, version, port))
        return engines[-1]

    v1 = registry.register_folder(model_folder, "m", alias="champion")
    flaky = Unreachable(registry)
    metrics = InferenceMetrics.create()
    server = AliasServer(settings, flaky, metrics, factory)

    async def scenario():
        nonlocal restart_may_finish
        restart_may_finish = asyncio.Event()
        loop_task = asyncio.create_task(server.run())
        try:
            await _until(server.healthy)
            flaky.down = True
            await _until(lambda: not server.registry_ok)

            engines[0].crashed, engines[0].returncode = True, -9  # killed: SIGKILL
            await _until(lambda: len(engines) == 2)  # restarting, with no registry to ask
            assert server.status() == "degraded" and "exited (code -9)" in server.phase
            response = await health_route(server, settings)
            body = json.loads(response.body)
            assert response.status_code == 503 and body["status"] == "degraded" and body["engine_restarts"] == 1
            with pytest.raises(EngineUnavailableError, match="restarting vLLM for version 1"):
                server.acquire()  # a clear 503, not a connection error

            restart_may_finish.set()
            await _until(server.healthy)
            assert engines[0].stopped  # the dead one was reaped
            assert engines[1].handle.version == v1.version and engines[1].model_dir == engines[0].model_dir
            assert (await health_route(server, settings)).status_code == 200
        finally:
            loop_task.cancel()
            await asyncio.gather(loop_task, return_exceptions=True)
            await server.shutdown()

    with caplog.at_level("INFO", logger="services.inference.alias_server"):
        asyncio.run(scenario())
    assert server.restarts == 1 and server.swaps == 1
    assert metrics.engine_restarts.labels(model="m")._value.get() == 1
    messages = [r.getMessage() for r in caplog.records]
    assert "engine exited; restarting" in messages and "engine restarted" in messages
    assert "registry unavailable; retrying" in messages  # and serving went on without it
