"""Guardrails applied to one request: its messages or prompt, its answer, its stream.

``GuardrailBook.screen(key, model)`` gives the ``Screen`` a request gets (None when no
guardrail applies, which costs a dictionary lookup): the gateway-wide guardrails, then
the model's, then the key's. ``Screen.request`` masks or refuses the request in place,
``Screen.answer`` does the same to a whole answer, and ``Screen.stream`` watches a
streamed one piece by piece.
"""

from __future__ import annotations

import logging
from typing import Any

from lathe.telemetry import log_fields
from services.gateway.audit import note_decision
from services.gateway.guardrails import (
    STREAM_WINDOW,
    Active,
    Finding,
    GuardrailBlockedError,
    GuardrailConfig,
)
from services.gateway.keys import KeyInfo
from services.gateway.metrics import GatewayMetrics

log = logging.getLogger(__name__)


class GuardrailBook:
    """Every guardrail the gateway knows, built once: the settings', each model's, each key's."""

    def __init__(
        self, everywhere: list[GuardrailConfig], by_model: dict[str, list[GuardrailConfig]], metrics: GatewayMetrics
    ) -> None:
        self.everywhere = [Active(c) for c in everywhere]
        self.by_model = {model: [Active(c) for c in configs] for model, configs in by_model.items() if configs}
        self.metrics = metrics
        self._keys: dict[str, list[Active]] = {}  # a key's guardrails never change after it is made

    def screen(self, key: KeyInfo, model: str) -> Screen | None:
        if not (self.everywhere or key.guardrails or model in self.by_model):
            return None
        own = self._keys.get(key.id)
        if own is None:
            if len(self._keys) > 10_000:
                self._keys.clear()
            own = self._keys[key.id] = [Active(GuardrailConfig.model_validate(g)) for g in key.guardrails]
        return Screen([*self.everywhere, *self.by_model.get(model, ()), *own], self.metrics, key.name, model)


class Screen:
    def __init__(self, guards: list[Active], metrics: GatewayMetrics, key: str, model: str) -> None:
        self.guards = guards
        self.metrics = metrics
        self.key = key
        self.model = model
        self.decisions: dict[str, str] = {}  # each guardrail's strongest decision, for the audit log

    def request(self, data: dict[str, Any], route: str) -> None:
        """Check a chat's messages or a completion's prompt; mask in place, or refuse."""
        for active in self._on("request"):
            found: dict[str, int] = {}
            for holder, field, role in _request_texts(data, route):
                if not active.screens(role):
                    continue
                finding = active.guard.check(holder[field])
                if finding is None:
                    continue
                _add(found, finding)
                if active.config.action == "block":
                    self._decide(active, "request", "block", found)
                    raise GuardrailBlockedError(
                        f"the request was refused by the {active.name} guardrail ({_listed(found)})",
                        param="messages" if route == "chat" else "prompt",
                    )
                holder[field] = finding.masked
            self._decide(active, "request", "mask" if found else "pass", found)

    def answer(self, data: dict[str, Any]) -> None:
        """Check each choice of a whole answer: mask it, or withhold it (``content_filter``)."""
        for active in self._on("response"):
            found: dict[str, int] = {}
            withheld = False
            for choice in data.get("choices") or []:
                if not isinstance(choice, dict):
                    continue
                holder, field = _answer_text(choice)
                if holder is None or not isinstance(holder.get(field), str):
                    continue
                finding = active.guard.check(holder[field])
                if finding is None:
                    continue
                _add(found, finding)
                if active.config.action == "block":
                    holder[field], choice["finish_reason"], withheld = "", "content_filter", True
                else:
                    holder[field] = finding.masked
            action = "block" if withheld else "mask" if found else "pass"
            self._decide(active, "response", action, found)

    def stream(self) -> StreamWatch | None:
        guards = self._on("response")
        return StreamWatch(self, guards) if guards else None

    def _on(self, side: str) -> list[Active]:
        return [a for a in self.guards if side in a.config.on]

    def _decide(self, active: Active, side: str, action: str, found: dict[str, int]) -> None:
        self.metrics.guardrail_decisions.labels(guardrail=active.name, action=action).inc()
        note_decision(self.decisions, active.name, action)
        if action != "pass":
            fields = log_fields(guardrail=active.name, side=side, action=action, found=found, key=self.key,
                                model=self.model)  # fmt: skip
            log.info("guardrail", extra=fields)


class StreamWatch:
    """A streamed answer's guardrails: each new piece is checked with the text just before
    it, so a finding split across events is still seen; the first finding stops the stream."""

    def __init__(self, screen: Screen, guards: list[Active]) -> None:
        self.screen = screen
        self.guards = guards
        self.tails: dict[int, str] = {}

    def feed(self, data: dict[str, Any]) -> str | None:
        """The guardrail that stops the stream at this event, if one does."""
        for choice in data.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else choice
            piece = delta.get("content") if "delta" in choice else delta.get("text")
            if not isinstance(piece, str) or not piece:
                continue
            index = choice.get("index", 0)
            seen = self.tails.get(index, "") + piece
            for active in self.guards:
                finding = active.guard.check(seen[-(len(piece) + STREAM_WINDOW) :])
                if finding is not None:
                    self.screen._decide(active, "response", "block", finding.kinds)
                    return active.name
            self.tails[index] = seen[-STREAM_WINDOW:]
        return None

    def passed(self) -> None:
        for active in self.guards:
            self.screen._decide(active, "response", "pass", {})


def _request_texts(data: dict[str, Any], route: str) -> list[tuple[Any, Any, str | None]]:
    """(holder, field, role) of each text a request sends: holder[field] is the text."""
    texts: list[tuple[Any, Any, str | None]] = []
    if route == "chat":
        for message in data.get("messages") or []:
            if not isinstance(message, dict):
                continue
            role, content = message.get("role"), message.get("content")
            if isinstance(content, str):
                texts.append((message, "content", role))
            elif isinstance(content, list):
                texts.extend(
                    (part, "text", role)
                    for part in content
                    if isinstance(part, dict) and isinstance(part.get("text"), str)
                )
        return texts
    prompt = data.get("prompt")
    if isinstance(prompt, str):
        texts.append((data, "prompt", None))
    elif isinstance(prompt, list):
        texts.extend((prompt, i, None) for i, p in enumerate(prompt) if isinstance(p, str))
    return texts


def _answer_text(choice: dict[str, Any]) -> tuple[dict | None, str]:
    if isinstance(choice.get("message"), dict):
        return choice["message"], "content"
    return (choice, "text") if "text" in choice else (None, "")


def _add(found: dict[str, int], finding: Finding) -> None:
    for kind, count in finding.kinds.items():
        found[kind] = found.get(kind, 0) + count


def _listed(found: dict[str, int]) -> str:
    return ", ".join(f"{kind} ×{count}" if count > 1 else kind for kind, count in sorted(found.items()))
