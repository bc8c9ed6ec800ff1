"""Guardrails: checks on what a request sends and on what the model answers.

Each guardrail is a small class with one method, ``check(text) -> Finding | None``. What a
finding does is the configured action:

- ``block`` refuses a request with a structured 400 (code ``guardrail_blocked``) and
  withholds an answer: the choice's text is emptied and its ``finish_reason`` is
  ``content_filter``, as OpenAI's own content filter does;
- ``mask`` (``pii`` only) replaces each finding with its typed placeholder (``<EMAIL>``).

A streamed answer is checked as it flows, each new piece with the text just before it; a
violation cuts the stream with an error event (text already sent cannot be masked).
Guardrails are set per model (``guardrails:`` of a model in the routes file) and per key
(``lathe keys create --guardrail pii:mask``); a request gets the model's, then the key's.

- ``pii``: ``lathe.pii``, the detector curation redacts documents with: e-mails, phone
  numbers, cards (Luhn), IBANs (mod-97), US SSNs, IP addresses, API keys and tokens.
- ``injection``: prompt-injection screening of user and tool content (RAG sources and tool
  results reach the model as such): instructions that override earlier ones, claims of a
  new system prompt or administrator, role reassignment ("you are now", "developer mode"),
  requests to reveal hidden instructions, forged chat-template markers and orders to
  answer with a fixed text. Written here: the field's screeners (llm-guard, rebuff) run a
  transformer classifier fetched from a model hub, or a second LLM call, and the gateway
  may neither fetch models at run time nor spend a model call per request.
- ``deny``: a deny list of terms or regular expressions (a topic as its words), matched
  case-insensitively on word boundaries.

A decision is counted in ``lathe_gateway_guardrail_decisions_total{guardrail,action}`` and
logged with what was found (kinds and counts), never with the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lathe.errors import InvalidRequestError
from lathe.pii import KINDS, redact

Action = Literal["block", "mask"]
Side = Literal["request", "response"]
# How far back a streamed piece is checked together with what came before it: longer than
# any single finding (a card, an IBAN, an injection phrase), so none is split unseen.
STREAM_WINDOW = 256


class GuardrailBlockedError(InvalidRequestError):
    code = "guardrail_blocked"


@dataclass(frozen=True)
class Finding:
    """What a guardrail found: kinds and counts (never the text), and the masked text where it masks."""

    kinds: dict[str, int]
    masked: str | None = None


class PiiGuardrail:
    name = "pii"

    def __init__(self, kinds: tuple[str, ...] = KINDS) -> None:
        self.kinds = kinds

    def check(self, text: str) -> Finding | None:
        masked, counts = redact(text, self.kinds)
        return Finding(dict(counts), masked) if counts else None


_INJECTION = {
    "override": r"\b(?:ignore|disregard|forget|override|bypass)\b[^.\n]{0,40}?\b(?:previous|prior|above|earlier|"
    r"preceding|all|any|your|the)\b[^.\n]{0,30}?\b(?:instructions?|prompts?|rules|directions|guidelines|"
    r"directives|context|the user)\b",
    "new_instructions": r"\b(?:new|updated|real|actual|additional)\s+(?:system\s+)?(?:instructions?|prompt|"
    r"directives?|rules)\b\s*(?::|from\b)|\bsystem\s+(?:override|prompt\s*:)|\bnote\s+to\s+(?:the\s+)?"
    r"(?:ai|assistant|model|llm)\b",
    "role": r"\byou\s+are\s+now\b|\bfrom\s+now\s+on,?\s+you\b|\bdeveloper\s+mode\b|\bjailbr(?:eak|oken)\b|"
    r"\bDAN\b|\b(?:answer|respond|reply|ai|assistant|model)\s+without\s+(?:any\s+)?(?:rules|restrictions|limits|"
    r"filters)\b|\bhas\s+no\s+(?:rules|restrictions|limits|filters)\b",
    "reveal": r"\b(?:reveal|show|print|repeat|leak|output|disclose)\b[^.\n]{0,40}?\b(?:system\s+prompt|hidden|"
    r"secret|initial\s+instructions|your\s+instructions|password)\b",
    "forged_turn": r"(?:^|\n)\s*(?:system|assistant)\s*:|<\|im_(?:start|end)\|>|\[/?INST\]|<</?SYS>>|"
    r"</(?:sources?|tool_result|tool_output|context)>|\bassistant,\s",
    "fixed_answer": r"\b(?:respond|reply|answer)\s+only\s+with\b|\b(?:end|start|begin|sign)\s+every\s+"
    r"(?:answer|message|reply|response)\b|\bbefore\s+answering\b|\bin\s+your\s+(?:answer|reply)\b|"
    r"\b(?:begin|start)\s+(?:your\s+(?:answer|reply|response)|the\s+(?:story|answer|reply|response|message)|a\s+new\s+"
    r"paragraph)\s+with\s+['\"‘“]|(?:^|[.!?]\s+)(?:begin|start)\s+with\s+['\"‘“]",
    "addressed": r"\b(?:assistant|ai|model|chatbot)\s*[:,]\s*(?:now\s+|please\s+)?(?:call|ignore|disregard|tell|"
    r"say|respond|reveal|print|send|delete|run)\b|\btell\s+the\s+user\s+(?:that\s+)?(?:their|they|to)\b",
    "credentials": r"\b(?:send|give|share|provide|enter)\s+(?:me\s+|us\s+)?(?:their|your|the)\s+(?:password|"
    r"passcode|credentials|card\s+number|pin|api\s+key)s?\b",
    "role_play": r"\blet'?s\s+play\s+a\s+game\b|\bpretend\s+(?:to\s+be|you\s+are)\b",
}


# Words one of which every match of a family holds (lower case): a text with none of them
# skips the family's pattern, which is most texts for most families; a substring test costs
# a fraction of a regular expression's scan.
_ANCHORS = {
    "override": ("ignore", "disregard", "forget", "override", "bypass"),
    "new_instructions": ("instruction", "prompt", "directive", "rule", "override", "note"),
    "role": ("now", "developer", "jailbr", "dan", "without", "has"),
    "reveal": ("reveal", "show", "print", "repeat", "leak", "output", "disclose"),
    "forged_turn": ("system", "assistant", "<|im_", "inst]", "<<", "</"),
    "fixed_answer": ("only", "every", "before", "your", "begin", "start"),
    "addressed": ("assistant", "ai", "model", "chatbot", "tell"),
    "credentials": ("password", "passcode", "credential", "card", "pin", "api"),
    "role_play": ("game", "pretend"),
}


class InjectionGuardrail:
    name = "injection"
    roles = ("user", "tool", "function")  # the deployer's own system prompt is not screened

    def __init__(self) -> None:
        self.patterns = {kind: (re.compile(p, re.IGNORECASE), _ANCHORS[kind]) for kind, p in _INJECTION.items()}

    def check(self, text: str) -> Finding | None:
        low = text.lower()
        found = {
            kind: 1
            for kind, (pattern, anchors) in self.patterns.items()
            if any(a in low for a in anchors) and pattern.search(text)
        }
        return Finding(found) if found else None


class DenyGuardrail:
    name = "deny"

    def __init__(self, terms: list[str]) -> None:
        self.pattern = re.compile("|".join(rf"(?<!\w)(?:{t})(?!\w)" for t in terms), re.IGNORECASE)

    def check(self, text: str) -> Finding | None:
        hits = len(self.pattern.findall(text))
        return Finding({"term": hits}) if hits else None


KNOWN = ("deny", "injection", "pii")


class GuardrailConfig(BaseModel):
    """One guardrail as the routes file and the admin API take it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    action: Action = "block"
    on: list[Side] = Field(default_factory=lambda: ["request", "response"], min_length=1)
    kinds: list[str] | None = None  # pii: which kinds (null: all)
    terms: list[str] = Field(default_factory=list)  # deny: terms or regular expressions

    @model_validator(mode="after")
    def _valid(self) -> GuardrailConfig:
        if self.name not in KNOWN:
            raise ValueError(f"no guardrail named {self.name!r}; known: {', '.join(KNOWN)}")
        if self.action == "mask" and self.name != "pii":
            raise ValueError(f"action mask is for pii only; {self.name} blocks")
        if self.kinds is not None and (self.name != "pii" or not set(self.kinds) <= set(KINDS)):
            raise ValueError(f"kinds are pii's: one or more of {', '.join(KINDS)}")
        if (self.name == "deny") != bool(self.terms):
            raise ValueError("terms: deny needs at least one term" if self.name == "deny" else "terms are deny's")
        for term in self.terms:
            try:
                re.compile(term)
            except re.error as exc:
                raise ValueError(f"terms: {term!r} is not a regular expression ({exc})") from None
        return self


@dataclass
class Active:
    """A guardrail built from its config, for the requests that get it."""

    config: GuardrailConfig
    guard: PiiGuardrail | InjectionGuardrail | DenyGuardrail = field(init=False)

    def __post_init__(self) -> None:
        c = self.config
        if c.name == "pii":
            self.guard = PiiGuardrail(tuple(c.kinds) if c.kinds else KINDS)
        elif c.name == "injection":
            self.guard = InjectionGuardrail()
        else:
            self.guard = DenyGuardrail(c.terms)

    @property
    def name(self) -> str:
        return self.config.name

    def screens(self, role: str | None) -> bool:
        """Whether this guardrail reads a message of ``role`` (None: a completion prompt, an answer)."""
        return role is None or not isinstance(self.guard, InjectionGuardrail) or role in InjectionGuardrail.roles
