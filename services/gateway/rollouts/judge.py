"""An LLM judge for a rollout: score sampled answers of both versions, 1 to 10.

While a rollout with a ``judge`` runs, the gateway sends a share (``sample_rate``) of the
model's non-streamed chat answers, champion's and candidate's alike, to the judge model
(any model this gateway serves) with the question, and records the grade (÷ 10) in the
answering version's window. Streams are not judged: the gateway does not keep their text.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import aiohttp

from lathe.telemetry import log_fields
from services.gateway.routing import Router

log = logging.getLogger(__name__)

PROMPT = (
    "You grade answers. Read the question and the answer, then reply with one integer from 1 (useless or wrong) "
    "to 10 (correct and helpful), and nothing else."
)
_GRADE = re.compile(r"\b(10|[1-9])\b")


def question_and_answer(request: dict[str, Any], response: dict[str, Any]) -> tuple[str, str] | None:
    messages = request.get("messages")
    choices = response.get("choices") or []
    if not isinstance(messages, list) or not messages or not choices:
        return None
    last_user = next((m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), None)
    answer = (choices[0].get("message") or {}).get("content") if isinstance(choices[0], dict) else None
    question = last_user.get("content") if last_user else None
    if not isinstance(question, str) or not isinstance(answer, str):
        return None
    return question[:4000], answer[:4000]


def parse_grade(text: str) -> float | None:
    match = _GRADE.search(text or "")
    return int(match.group(1)) / 10 if match else None


async def grade(router: Router, http: aiohttp.ClientSession, judge_model: str, question: str, answer: str):
    """The judge's grade in 0.1..1, or None when it could not be had (never raises)."""
    try:
        backend = router.pool(judge_model).choose(question)
        payload = {
            "model": backend.upstream_model,
            "messages": [
                {"role": "system", "content": PROMPT},
                {"role": "user", "content": f"Question: {question}\n\nAnswer: {answer}\n\nGrade:"},
            ],
            "max_tokens": 4,
            "temperature": 0,
        }
        async with http.post(backend.url + "/v1/chat/completions", data=json.dumps(payload).encode(),
                             headers={"content-type": "application/json"}) as response:  # fmt: skip
            if response.status != 200:
                return None
            data = await response.json()
        return parse_grade(data["choices"][0]["message"]["content"])
    except Exception as exc:  # a judge that fails costs a sample, never a request
        log.warning("judge failed", extra=log_fields(error=f"{type(exc).__name__}: {exc}"))
        return None
