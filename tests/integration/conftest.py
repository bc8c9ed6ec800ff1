"""A real local platform for the integration tests, on its own ports and home.

It is started once for the package through the real CLI (`lathe up --json`) and stopped
with `lathe down`, after which every process it started must be gone. The bundled
model is taken from the repository's ``.lathe/assets`` (``make install`` prepares it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import platform as shared
from tests.support.s3 import s3_server

# Away from the defaults (a developer's own platform may be up) and from Ray's worker
# port range (10002-19999).
PORTS = {
    "LATHE_MLFLOW_PORT": "25000",
    "LATHE_RAY_PORT": "26380",
    "LATHE_RAY_DASHBOARD_PORT": "28265",
    "LATHE_RAY_CLIENT_PORT": "30001",
    "LATHE_RAY_AGENT_PORT": "22365",
    "LATHE_INFERENCE_PORT": "28100",
    "LATHE_INFERENCE_ENGINE_PORT_BASE": "28200",
    "LATHE_GATEWAY_PORT": "28050",
    "LATHE_GATEWAY_METRICS_PORT": "28059",
    "LATHE_PROMETHEUS_PORT": "29090",
    "LATHE_RAG_PORT": "28300",
    "LATHE_AGENT_PORT": "28400",
}


def platform_env(home: Path, **extra: str) -> dict[str, str]:
    return shared.platform_env(home, PORTS, **extra)


class Platform(shared.Platform):
    def __init__(self, home: Path, **extra_env: str) -> None:
        super().__init__(home, PORTS, **extra_env)

    @property
    def mlflow_uri(self) -> str:
        return self.url("LATHE_MLFLOW_PORT")

    @property
    def inference_url(self) -> str:
        return self.url("LATHE_INFERENCE_PORT")


# Package scope: tests/e2e and tests/load start platforms of their own, and two cores hold one at a time.
@pytest.fixture(scope="package")
def object_store():
    """An S3 endpoint (moto) the platform's Ray reaches as it would AWS or MinIO: checkpoints go there."""
    with s3_server("lathe-checkpoints") as env:
        yield env


@pytest.fixture(scope="package")
def platform(tmp_path_factory, object_store) -> Platform:
    # `lathe up` passes its environment to the Ray head, so Ray Train's workers reach the store.
    platform = Platform(tmp_path_factory.mktemp("lathe-home"), **object_store)
    platform.up()
    yield platform
    platform.down()
