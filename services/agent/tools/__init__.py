"""Agent tools: one module per tool, and ``registry`` that adds the ``lathe.agent_tools`` entry points."""

from services.agent.tools.base import BaseTool, Tool, ToolContext, ToolError

__all__ = ["BaseTool", "Tool", "ToolContext", "ToolError"]
