"""``lathe agent …``: run an agent through the gateway and watch its steps.

    lathe agent ask "What is 17 * 23?" --tool-choice calculator
    lathe agent ask "And plus 1?" --session ses_…          # the conversation continues
    lathe agent ask "Summarise the docs on quotas" --json   # the whole run record
    lathe agent tools                                       # agents and the tools this key may use

``--tool-choice NAME`` makes the first step call that tool; with the small local model
this is what makes a tool-using run dependable (see services/agent/prompt_formats.py).
"""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from lathe.cli.gateway_client import GatewayClient
from lathe.cli.output import console, err_console, print_json

app = typer.Typer(help="Ask an agent (tool calling over the gateway) and list its tools.", no_args_is_help=True)

_STYLE = {"thought": "dim", "tool_call": "cyan", "tool_result": "green", "answer": "bold", "error": "red"}
# How a refusal reads: which gateway answered, and with what status.
_REFUSED = "{base} answered {status}: "


@app.command("ask")
def ask(
    message: str = typer.Argument(..., help="What to ask the agent."),
    agent: str = typer.Option("assistant", "--agent", help="Which agent (see `lathe agent tools`)."),
    session: str | None = typer.Option(None, "--session", help="Continue this conversation (session id)."),
    tool_choice: str = typer.Option("auto", "--tool-choice", help="auto, none, or a tool the first step must call."),
    model: str | None = typer.Option(None, "--model", help="Model to generate with (default: the service's)."),
    max_steps: int | None = typer.Option(None, "--max-steps", min=1, help="Most model calls in the run."),
    json_output: bool = typer.Option(False, "--json", help="Print the whole run record as JSON."),
    url: str | None = typer.Option(None, "--url", help="Gateway base URL (default: the local gateway)."),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar="LATHE_API_KEY", help="Gateway key (default: the CLI's own, from `lathe up`)."
    ),
) -> None:
    """Run an agent on MESSAGE; each step prints as one line, then the session id to continue with."""
    from lathe.errors import InvalidRequestError

    if not message.strip():
        raise InvalidRequestError("the message is empty", param="message")
    client = GatewayClient(url, api_key, timeout=300, refused=_REFUSED)
    body: dict[str, Any] = {"input": message, "tool_choice": tool_choice, "stream": not json_output}
    if session:
        body["session_id"] = session
    if model:
        body["model"] = model
    if max_steps:
        body["max_steps"] = max_steps
    path = f"/v1/agents/{agent}/runs"
    if json_output:
        print_json(client.call("POST", path, json=body))
        return
    with client.stream("POST", path, json=body) as response:
        for step in _steps(response.iter_lines()):
            _print_step(step)
        session_id = response.headers.get("x-lathe-session-id")
    if session_id:
        err_console.print(f"[dim]session {session_id} (continue with --session {session_id})[/]")


@app.command("tools")
def tools(
    json_output: bool = typer.Option(False, "--json", help="Print the agents and their tools as JSON."),
    url: str | None = typer.Option(None, "--url", help="Gateway base URL (default: the local gateway)."),
    api_key: str | None = typer.Option(None, "--api-key", envvar="LATHE_API_KEY", help="Gateway key."),
) -> None:
    """List the agents and the tools each may call with your key."""
    agents = GatewayClient(url, api_key, timeout=30, refused=_REFUSED).call("GET", "/v1/agents")["data"]
    if json_output:
        print_json(agents)
        return
    table = Table("agent", "tool", "description")
    for entry in agents:
        for i, tool in enumerate(entry["tools"] or [{"name": "(none)", "description": ""}]):
            table.add_row(entry["name"] if i == 0 else "", tool["name"], tool["description"])
    console.print(table)


def _steps(lines) -> Any:
    """Steps from an SSE stream: the ``data:`` of each event, until ``[DONE]``."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        yield json.loads(payload)


def _print_step(step: dict[str, Any]) -> None:
    kind = step.get("type", "?")
    if kind == "tool_call":
        extra = " (forced)" if step.get("forced") else ""
        text = f"→ {step['tool']} {json.dumps(step.get('arguments', {}))}{extra}"
    elif kind == "tool_result":
        content = " ".join(str(step.get("content", "")).split())
        text = f"← {step['tool']} [{step.get('outcome')}] {content[:160]}"
    elif kind == "error":
        text = f"! {step.get('code')}: {step.get('message')}"
    else:
        text = str(step.get("content", ""))
    console.print(Text.assemble((f"{kind:<11}", _STYLE.get(kind, "")), " ", text), highlight=False, soft_wrap=True)
