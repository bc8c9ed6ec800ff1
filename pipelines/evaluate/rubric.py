"""Rubric scores from an LLM judge: each answer graded 1 to 5 on helpfulness, correctness and,
for answers built on sources (RAG), groundedness.

    grader = RubricJudge(endpoint, "rubric-v1", constrained=True)
    scores = grade_all(grader, ["helpfulness", "correctness"], prompts, answers, contexts)

The instructions are versioned beside the pairwise ones (``prompts/rubric-v1.md``), one
criterion per call so a small judge is not asked to juggle three. With ``constrained`` the
judge may only answer ``1``…``5`` (vLLM's structured outputs); otherwise it ends with
``[[N]]``. A grade that cannot be read fails the run, as a pairwise verdict does.
"""

from __future__ import annotations

import re
import statistics
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pipelines.evaluate.chat import Endpoint, ask
from pipelines.evaluate.pairwise import PROMPTS, JudgeError

CRITERIA = {
    "helpfulness": "does the answer address what the user asked, usefully and without padding?",
    "correctness": "is what the answer states true?",
    "groundedness": "is every claim in the answer supported by the sources given with the question?",
}
_BRACKETED = re.compile(r"\[\[\s*([1-5])\s*\]\]")


def parse_grade(text: str, constrained: bool) -> int:
    cleaned = text.strip().strip(".")
    if constrained and cleaned in {"1", "2", "3", "4", "5"}:
        return int(cleaned)
    found = _BRACKETED.findall(text)
    if found:
        return int(found[-1])
    raise JudgeError(f"the judge's grade holds no score: {text[:120]!r}")


class RubricJudge:
    def __init__(self, endpoint: Endpoint, template: str = "rubric-v1", constrained: bool = True) -> None:
        self.system, _, self.user = (PROMPTS / f"{template}.md").read_text().partition("\n---\n")
        self.endpoint, self.constrained, self.template = endpoint, constrained, template
        self._client = endpoint.client()

    def grade(self, criterion: str, question: str, answer: str, sources: str | None) -> int:
        system = self.system.replace("{criterion}", criterion).replace("{description}", CRITERIA[criterion])
        user = (self.user.replace("{question}", question).replace("{sources}", sources or "(none)")
                .replace("{answer}", answer))  # fmt: skip
        messages = [{"role": "system", "content": system.strip()}, {"role": "user", "content": user.strip()}]
        extra = {"structured_outputs": {"choice": ["1", "2", "3", "4", "5"]}} if self.constrained else None
        text, _ = ask(self._client, self.endpoint, messages, 4 if self.constrained else 512, extra_body=extra)
        return parse_grade(text, self.constrained)


def grade_all(
    grader: Any,
    criteria: list[str],
    prompts: list[str],
    answers: list[str],
    contexts: list[str | None],
    concurrency: int = 4,
) -> dict[str, float]:
    """Mean grade per criterion; groundedness only over the prompts that carry sources."""
    jobs = [(c, i) for c in criteria for i in range(len(prompts)) if c != "groundedness" or contexts[i]]

    def one(job: tuple[str, int]) -> tuple[str, int]:
        criterion, i = job
        return criterion, grader.grade(criterion, prompts[i], answers[i], contexts[i])

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        graded = list(pool.map(one, jobs))
    return {c: statistics.fmean(g for k, g in graded if k == c) for c in criteria if any(k == c for k, _ in graded)}
