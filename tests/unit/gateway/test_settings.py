import json

import pytest
from pydantic import ValidationError

from services.gateway.settings import GatewayServiceSettings


def test_placeholder_admin_keys_are_refused(monkeypatch):
    monkeypatch.setenv("LATHE_GATEWAY_ADMIN_KEY", "changeme")
    with pytest.raises(ValidationError, match="admin_key"):
        GatewayServiceSettings()


def test_default_route_is_the_local_inference_service(monkeypatch, tmp_path):
    monkeypatch.setenv("LATHE_HOME", str(tmp_path))
    routes = GatewayServiceSettings().load_routes()
    assert list(routes.models) == ["smollm2-135m-instruct"]
    assert routes.models["smollm2-135m-instruct"].backends[0].url == "http://127.0.0.1:8100"


def test_a_routes_file_with_a_typo_names_the_field(monkeypatch, tmp_path):
    path = tmp_path / "routes.json"
    path.write_text(json.dumps({"models": {"m": {"backends": [{"url": "http://a:1", "wieght": 5}]}}}))
    monkeypatch.setenv("LATHE_GATEWAY_ROUTES_FILE", str(path))
    with pytest.raises(ValidationError, match="wieght"):
        GatewayServiceSettings().load_routes()


def test_admin_key_file_is_read_when_no_variable(monkeypatch, tmp_path):
    monkeypatch.delenv("LATHE_GATEWAY_ADMIN_KEY", raising=False)
    monkeypatch.setenv("LATHE_HOME", str(tmp_path))
    (tmp_path / "gateway").mkdir()
    (tmp_path / "gateway" / "admin_key").write_text("lk-admin-0123456789abcdef\n")
    assert GatewayServiceSettings().load_admin_key() == "lk-admin-0123456789abcdef"


def test_the_local_platform_routes_the_rag_encoder_as_an_embedding_model(monkeypatch, tmp_path):
    from lathe.platform.components import GatewayComponent
    from lathe.platform.processes import StateStore
    from lathe.settings import load_settings

    monkeypatch.setenv("LATHE_HOME", str(tmp_path))
    monkeypatch.setenv("LATHE_RAG_PORT", "18333")
    platform = load_settings()
    for name, value in GatewayComponent(platform, StateStore(platform.run_dir)).env().items():
        monkeypatch.setenv(name, value)
    routes = GatewayServiceSettings().load_routes()
    assert list(routes.models) == ["smollm2-135m-instruct", "all-minilm-l6-v2"]
    assert routes.models["all-minilm-l6-v2"].backends[0].url == "http://127.0.0.1:18333"

    monkeypatch.setenv("LATHE_RAG_ENABLED", "false")
    monkeypatch.delenv("LATHE_GATEWAY_RAG_EMBEDDING_MODEL")
    platform = load_settings()
    assert "LATHE_GATEWAY_RAG_EMBEDDING_MODEL" not in GatewayComponent(platform, StateStore(platform.run_dir)).env()


@pytest.mark.parametrize("docs, status", [("true", 200), ("false", 404)])
def test_the_api_description_is_served_only_when_docs_is_on(monkeypatch, tmp_path, docs, status):
    from fastapi.testclient import TestClient

    from services.gateway.app import create_app

    monkeypatch.setenv("LATHE_HOME", str(tmp_path))
    monkeypatch.setenv("LATHE_GATEWAY_DOCS", docs)
    client = TestClient(create_app(GatewayServiceSettings(), serve_metrics=False))  # no lifespan: routes only
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert client.get(path).status_code == status, path
