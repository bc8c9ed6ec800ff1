"""``lathe agent`` against the real agent app served by uvicorn on loopback."""

import json
import socket
import threading
import time

import pytest
import uvicorn
from typer.testing import CliRunner

from lathe.cli import app as lathe_app
from services.agent.app import create_app

from .conftest import ScriptedGateway, action, final


@pytest.fixture
def serve(agent_settings):
    servers = []

    def start(gateway: ScriptedGateway) -> str:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        app = create_app(agent_settings(), transport=gateway)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.started
        return f"http://127.0.0.1:{port}"

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


def test_ask_streams_one_line_per_step(serve):
    url = serve(ScriptedGateway([action("calculator", {"expression": "17 * 23"}), final("391")]))
    result = CliRunner().invoke(lathe_app, ["agent", "ask", "17 * 23?", "--url", url, "--api-key", "lk-test"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert [line.split()[0] for line in lines] == ["thought", "tool_call", "tool_result", "thought", "answer"]
    assert 'calculator {"expression": "17 * 23"}' in lines[1]
    assert lines[-1].split() == ["answer", "391"]


def test_ask_json_prints_the_run_and_tools_lists_agents(serve):
    gw = ScriptedGateway([final("hi there")])
    url = serve(gw)
    result = CliRunner().invoke(lathe_app, ["agent", "ask", "hello", "--json", "--url", url, "--api-key", "lk-test"])
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)
    assert run["status"] == "completed" and run["answer"] == "hi there"
    assert gw.chat_headers[0]["authorization"] == "Bearer lk-test"
    listed = CliRunner().invoke(lathe_app, ["agent", "tools", "--json", "--url", url])
    assert [t["name"] for t in json.loads(listed.stdout)[0]["tools"]] == [
        "calculator",
        "rag_search",
        "sql_query",
        "http_get",
    ]


def test_ask_with_an_unknown_tool_fails_with_the_services_message(serve):
    url = serve(ScriptedGateway())
    result = CliRunner().invoke(lathe_app, ["agent", "ask", "x", "--tool-choice", "nope", "--url", url, "--json"])
    assert result.exit_code != 0
    assert "unknown tool 'nope'" in str(result.exception)
