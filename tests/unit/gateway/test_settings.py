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
