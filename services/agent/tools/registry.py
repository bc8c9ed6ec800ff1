"""The tools an agent can be given: the built-in ones plus the ``lathe.agent_tools`` entry points.

An entry point names a tool class (built with the service settings) or a factory
taking the settings; its ``name`` must match the entry point's name. A plugin that
fails to load is logged and skipped: one broken package must not stop the service.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
from collections.abc import Mapping

from services.agent.settings import AgentServiceSettings
from services.agent.tools.base import Tool
from services.agent.tools.calculator import Calculator
from services.agent.tools.http_get import HttpGet
from services.agent.tools.rag_search import RagSearch
from services.agent.tools.sql_query import SqlQuery

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "lathe.agent_tools"
BUILTIN = (Calculator, RagSearch, SqlQuery, HttpGet)
_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9_]{0,63}$")


def load_tools(settings: AgentServiceSettings) -> dict[str, Tool]:
    """Every tool by name; a plugin cannot replace a built-in tool."""
    tools: dict[str, Tool] = {cls.name: cls(settings) for cls in BUILTIN}
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in tools:
            log.warning("agent tool plugin ignored: the name is taken", extra={"fields": {"tool": entry.name}})
            continue
        try:
            tool = _build(entry.load(), settings)
        except Exception as exc:  # a plugin's import error is its own; keep serving the others
            log.error(
                "agent tool plugin failed to load",
                extra={"fields": {"tool": entry.name, "entry": entry.value, "error": repr(exc)}},
            )
            continue
        if tool.name != entry.name or not _NAME.match(tool.name):
            log.error("agent tool plugin has a bad name", extra={"fields": {"entry": entry.name, "tool": tool.name}})
            continue
        tools[tool.name] = tool
    return tools


def _build(target: object, settings: AgentServiceSettings) -> Tool:
    tool = target(settings) if callable(target) else target
    if not isinstance(tool, Tool):
        raise TypeError(f"{target!r} does not build a tool (needs name, description, Input and run)")
    return tool


def agent_tools(configured: list[str], tools: Mapping[str, Tool]) -> list[str]:
    """The tool names an agent's configuration names ("*": all), in a stable order."""
    if "*" in configured:
        return sorted(tools)
    return [name for name in configured if name in tools]


def parse_allowlist(header: str | None) -> set[str] | None:
    """``x-lathe-allowed-tools``: None means every tool (absent or ``*``); empty means none."""
    if header is None:
        return None
    names = {part.strip() for part in header.split(",") if part.strip()}
    return None if "*" in names else names


def allowed_tools(configured: list[str], tools: Mapping[str, Tool], key_allowlist: set[str] | None) -> list[str]:
    """The agent's tools that the caller's key may use."""
    names = agent_tools(configured, tools)
    return names if key_allowlist is None else [n for n in names if n in key_allowlist]
