import pytest
from pydantic import ValidationError

from services.agent.settings import AgentServiceSettings


def test_defaults_follow_the_platform(monkeypatch, tmp_path, clean_lathe_env):
    monkeypatch.setenv("LATHE_HOME", str(tmp_path))
    settings = AgentServiceSettings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8400)
    assert settings.gateway_url == "http://127.0.0.1:8000"
    assert settings.memory == f"sqlite:///{tmp_path / 'agent' / 'agent.db'}"
    assert settings.protocol_for("smollm2-135m-instruct") == "react"
    assert list(settings.agents) == ["assistant"]
    assert settings.agents["assistant"].tools == ["calculator", "rag_search", "sql_query", "http_get"]
    assert settings.http_allowlist == [] and settings.rag_collection == "docs"


def test_environment_sets_lists_and_maps(monkeypatch, clean_lathe_env):
    monkeypatch.setenv("LATHE_GATEWAY_URL", "http://lathe-gateway:8000")
    monkeypatch.setenv("LATHE_AGENT_PROTOCOLS", '{"gpt-4o-mini": "tools"}')
    monkeypatch.setenv("LATHE_AGENT_HTTP_ALLOWLIST", "Docs.Python.org, .example.com")
    monkeypatch.setenv("LATHE_AGENT_AGENTS", '{"analyst": {"tools": ["sql_query"], "system_prompt": "Be exact."}}')
    monkeypatch.setenv("LATHE_AGENT_TOOL_TIMEOUTS", '{"rag_search": 30}')
    settings = AgentServiceSettings()
    assert settings.gateway_url == "http://lathe-gateway:8000"
    assert settings.protocol_for("gpt-4o-mini") == "tools"
    assert settings.http_allowlist == ["docs.python.org", ".example.com"]
    assert settings.agents["analyst"].system_prompt == "Be exact."
    assert settings.timeout_for("rag_search") == 30 and settings.timeout_for("calculator") == 15


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LATHE_AGENT_MEMORY_URL", "mysql://x"),
        ("LATHE_AGENT_PROTOCOLS", '{"m": "json"}'),
        ("LATHE_AGENT_MAX_STEPS", "0"),
        ("LATHE_AGENT_AGENTS", '{"a": {"tool": ["calculator"]}}'),
    ],
)
def test_bad_values_name_the_field(monkeypatch, clean_lathe_env, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.removeprefix("LATHE_AGENT_").lower()):
        AgentServiceSettings()
