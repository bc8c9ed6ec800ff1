"""RAG answers graded by a judge model: faithfulness and answer relevance.

    judge = RagJudge(ask)            # ask(messages, choices) -> the judge's reply
    grades = judge.grade(question, answer)   # a /v1/rag/query response

* **Faithfulness**: each claim of the answer (a sentence, as the RAG service lists
  them in ``claims``) goes to the judge with the sources it cites (all the sources the
  model was given, for a sentence that cites none): "is the statement supported by
  the sources? yes or no". The score is the share of claims the judge calls supported.
* **Answer relevance**: the judge grades 1 to 5 whether the answer addresses the
  question; reported as ``(grade - 1) / 4``.

Beside them stays the service's own check, which needs no judge: a claim is supported
when a source it cites holds most of its content words (``citation_support``).

The judge is any chat model behind the gateway, asked with a constrained choice
(``structured_outputs``, which vLLM honours); a reply that is not one of the choices
is read for its first word, and one that still holds no verdict fails the run with a
line naming the question. ``ragas`` is not used: its faithfulness metric needs the
judge to decompose answers into statements as JSON, which a small served model does
not do reliably, and it would bring LangChain into the CLI for what is two prompts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from lathe.errors import LatheError

Ask = Callable[[list[dict[str, str]], list[str]], str]

SUPPORT_SYSTEM = (
    "You check whether a statement is supported by the sources given with it. Answer yes when "
    "the sources state it or it follows directly from them; answer no when they do not say it, "
    "even if it is true. Reply with one word: yes or no."
)
RELEVANCE_SYSTEM = (
    "You grade whether an answer addresses the question that was asked, from 1 (not at all) to "
    "5 (fully and directly). Ignore whether it is true. Reply with the grade alone: 1, 2, 3, 4 or 5."
)
_GRADES = ["1", "2", "3", "4", "5"]
_WORD = re.compile(r"[A-Za-z0-9]+")


class JudgeError(LatheError):
    code = "judge_error"


def _verdict(reply: str, choices: list[str], question: str) -> str:
    cleaned = reply.strip().strip(".").lower()
    if cleaned in choices:
        return cleaned
    first = _WORD.search(cleaned)
    if first and first.group(0) in choices:
        return first.group(0)
    raise JudgeError(f"the judge's reply for {question!r} is not one of {'/'.join(choices)}: {reply[:80]!r}")


class RagJudge:
    def __init__(self, ask: Ask, max_source_chars: int = 2000) -> None:
        self.ask = ask
        self.max_source_chars = max_source_chars

    def supported(self, question: str, statement: str, sources: list[str]) -> bool:
        text = "\n\n".join(f"Source: {s[: self.max_source_chars]}" for s in sources) or "Source: (none)"
        messages = [
            {"role": "system", "content": SUPPORT_SYSTEM},
            {"role": "user", "content": f"{text}\n\nStatement: {statement}\n\nIs the statement supported?"},
        ]
        return _verdict(self.ask(messages, ["yes", "no"]), ["yes", "no"], question) == "yes"

    def relevance(self, question: str, answer: str) -> float:
        messages = [
            {"role": "system", "content": RELEVANCE_SYSTEM},
            {"role": "user", "content": f"Question: {question}\n\nAnswer: {answer}\n\nGrade:"},
        ]
        return (int(_verdict(self.ask(messages, _GRADES), _GRADES, question)) - 1) / 4

    def grade(self, question: str, result: dict[str, Any]) -> dict[str, Any]:
        """The judge's grades of one grounded answer (a ``/v1/rag/query`` response)."""
        sources = {int(s["index"]): str(s.get("text") or "") for s in result.get("sources") or []}
        verdicts = []
        for claim in result.get("claims") or []:
            cited = [sources[n] for n in claim.get("sources") or [] if n in sources] or list(sources.values())
            verdicts.append((claim["sentence"], self.supported(question, claim["sentence"], cited)))
        return {
            "faithfulness": sum(ok for _, ok in verdicts) / len(verdicts) if verdicts else 0.0,
            "answer_relevance": self.relevance(question, str(result.get("answer") or "")),
            "unsupported": [sentence for sentence, ok in verdicts if not ok],
        }


def citation_support(result: dict[str, Any]) -> float | None:
    """Share of an answer's claims that a source they cite contains (the service's check)."""
    listed = result.get("claims") or []
    return sum(bool(c.get("supported")) for c in listed) / len(listed) if listed else None
