"""Follow-up questions: condense a conversation's last question into a standalone query.

A follow-up ("How do I hash a file with it?") cannot be retrieved by itself: "it" is in
an earlier turn. Before retrieval the served model rewrites it into a question that
stands alone ("How do I hash a file with the hashlib module?"), as LlamaIndex's
condense-question chat engine does. The prompt is few-shot because small models (the
laptop's SmolLM2-135M) follow examples far better than instructions.

A small model's rewrite is checked before it is trusted, with the same tokenizer the
sparse index uses:

- it must keep most of the question's own content words (a rewrite that answers the
  question, or repeats an earlier one, does not);
- when the question refers back ("it", "they", "this" …), it must bring in at least one
  word from the conversation, or it resolved nothing.

A rewrite that fails either check is replaced by the previous user turn followed by the
question, which hybrid retrieval handles well. Which of the two was used is returned.

A conversation longer than ``history_chars`` loses its oldest turns first, whole; the
response lists the ones left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from services.rag.encoders import tokenize

SYSTEM = "You rewrite a follow-up question into a standalone question. Reply with one line: the rewritten question."
EXAMPLES = (
    ("What is the json module for?", "How do I pretty-print with it?", "How do I pretty-print with the json module?"),
    ("What does os.walk return?", "Is it recursive?", "Is os.walk recursive?"),
)
# Words that point back into the conversation.
REFERRING = frozenset("it its this that these those they them their there one ones he she him her his".split())
_PREFIX = re.compile(r"^\s*(standalone question|rewritten question|question|rewrite)\s*:\s*", re.IGNORECASE)


@dataclass
class Condensed:
    """The query retrieval and generation use, and how it was made."""

    query: str
    method: str  # none | model | history
    rewrite: str | None = None  # the model's own words, also when they were not used
    turns_used: int = 0
    dropped_turns: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rewritten_query": self.query,
            "method": self.method,
            "model_rewrite": self.rewrite,
            "turns_used": self.turns_used,
            "dropped_turns": self.dropped_turns,
        }


def fit_history(turns: list[dict[str, str]], max_chars: int) -> tuple[list[dict[str, str]], list[int]]:
    """The most recent turns whose text fits ``max_chars``, and the indexes left out."""
    used = 0
    start = len(turns)
    for index in range(len(turns) - 1, -1, -1):
        used += len(turns[index]["content"])
        if used > max_chars:
            break
        start = index
    return turns[start:], list(range(start))


def condense_messages(turns: list[dict[str, str]], question: str) -> list[dict[str, str]]:
    """The few-shot chat that asks for the standalone question."""
    messages = [{"role": "system", "content": SYSTEM}]
    for previous, follow_up, standalone in EXAMPLES:
        messages.append({"role": "user", "content": _ask(f"Previous question: {previous}", follow_up)})
        messages.append({"role": "assistant", "content": standalone})
    history = "\n".join(f"{_speaker(t['role'])}: {_one_line(t['content'])}" for t in turns)
    messages.append({"role": "user", "content": _ask(history, question)})
    return messages


def _ask(history: str, question: str) -> str:
    return f"{history}\nFollow-up: {question}"


def _speaker(role: str) -> str:
    return "Previous question" if role == "user" else "Previous answer"


def _one_line(text: str, limit: int = 600) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + " …"


def clean_rewrite(text: str) -> str:
    """The first line of a reply, without a label or quotes, up to its first question mark."""
    line = next((ln for ln in text.strip().splitlines() if ln.strip()), "")
    line = _PREFIX.sub("", line).strip().strip("\"'` ")
    mark = line.find("?")
    return line[: mark + 1] if mark >= 0 else line


def accept_rewrite(rewrite: str, question: str, turns: list[dict[str, str]]) -> bool:
    """True when the rewrite keeps the question and resolves what it refers to."""
    if not rewrite or len(rewrite.split()) > 3 * len(question.split()) + 20:
        return False
    asked = set(tokenize(question))
    written = set(tokenize(rewrite))
    if asked and len(asked & written) / len(asked) < 0.6:
        return False
    words = {w.strip(".,;:!?\"'()").lower() for w in question.split()}
    if words & REFERRING:
        context = set(tokenize(" ".join(t["content"] for t in turns))) - asked
        return bool(written & context)
    return True


def history_query(question: str, turns: list[dict[str, str]]) -> str:
    """The fallback: the previous user turn, then the question."""
    previous = next((t["content"] for t in reversed(turns) if t["role"] == "user"), "")
    return f"{_one_line(previous, 400)} {question}".strip()


def has_user_turn(turns: list[dict[str, str]]) -> bool:
    return any(t["role"] == "user" for t in turns)
