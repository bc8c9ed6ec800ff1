"""Pairwise LLM-as-judge: is the candidate's answer better than the champion's, prompt by prompt?

    outcomes = [judge_pair(judge, q, candidate[i], champion[i]) for i, q in enumerate(questions)]
    summary = summarize(outcomes, resamples=2000, confidence=0.95, seed=0)
    summary["win_rate"], summary["low"], summary["high"], summary["conclusive"]

Each prompt is judged twice, with the answers in both orders, because judges prefer a
position. The candidate wins a prompt only when both orders prefer it, loses only when
both prefer the champion, and ties otherwise; the share of prompts where both orders
agree is the judge's position consistency (its self-agreement). The win rate counts a
tie as half a win. Its confidence interval is a percentile bootstrap over prompts, and
the result is *inconclusive* when the interval holds 50 %: the gate should not read
noise as a win. A judge that cannot be reached, or answers with no verdict, fails the
run: a verdict nobody gave is never counted as a tie.

Written here rather than taken from a library: the protocol (both orders, strict wins,
ties as half, a seeded percentile bootstrap) is a few dozen lines that the gate relies on
exactly, and its tests pin that arithmetic with a scripted judge.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from lathe.errors import UpstreamError
from pipelines.evaluate.chat import Endpoint, ask

Verdict = Literal["A", "B", "tie"]
PROMPTS = Path(__file__).resolve().parent / "prompts"
_BRACKETED = re.compile(r"\[\[\s*([ABC])\s*\]\]")


class JudgeError(UpstreamError):
    """The judge gave no verdict that can be read."""


@dataclass(frozen=True)
class Outcome:
    question: str
    candidate: str
    champion: str
    forward: Verdict  # the candidate shown as A
    backward: Verdict  # the champion shown as A
    result: Literal["win", "loss", "tie"]
    consistent: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def combine(forward: Verdict, backward: Verdict) -> tuple[str, bool]:
    """The candidate's result from both orders, and whether the two orders agree."""
    for_candidate = {"A": 1, "B": -1, "tie": 0}[forward]
    swapped = {"A": -1, "B": 1, "tie": 0}[backward]  # in the second order the candidate is B
    consistent = for_candidate == swapped
    if consistent and for_candidate == 1:
        return "win", True
    if consistent and for_candidate == -1:
        return "loss", True
    return "tie", consistent


def summarize(outcomes: list[Outcome], resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> dict:
    """Win rate (ties count half), its bootstrap interval, conclusiveness and consistency."""
    if not outcomes:
        raise JudgeError("the judge compared no prompt: nothing to summarize")
    scores = [{"win": 1.0, "tie": 0.5, "loss": 0.0}[o.result] for o in outcomes]
    n = len(scores)
    rng = random.Random(seed)
    means = sorted(sum(scores[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    tail = (1.0 - confidence) / 2
    low, high = means[math.floor(tail * (resamples - 1))], means[math.ceil((1.0 - tail) * (resamples - 1))]
    counts = {kind: sum(o.result == kind for o in outcomes) for kind in ("win", "loss", "tie")}
    return {
        "win_rate": sum(scores) / n,
        "low": low,
        "high": high,
        "conclusive": not (low <= 0.5 <= high),
        "position_consistency": sum(o.consistent for o in outcomes) / n,
        "prompts": n,
        "wins": counts["win"],
        "losses": counts["loss"],
        "ties": counts["tie"],
    }


def parse_verdict(text: str, constrained: bool) -> Verdict:
    """``A``/``B``/``tie`` when constrained; else the last ``[[A]]``, ``[[B]]`` or ``[[C]]``."""
    cleaned = text.strip().strip(".\"'").lower()
    if constrained and cleaned in ("a", "b", "tie"):
        return "tie" if cleaned == "tie" else cleaned.upper()  # type: ignore[return-value]
    found = _BRACKETED.findall(text)
    if found:
        return {"A": "A", "B": "B", "C": "tie"}[found[-1]]  # type: ignore[return-value]
    raise JudgeError(f"the judge's answer holds no verdict: {text[:120]!r}")


class Judge:
    """An OpenAI-compatible model asked which of two answers is better."""

    def __init__(self, endpoint: Endpoint, template: str = "pairwise-v1", constrained: bool = True) -> None:
        path = PROMPTS / f"{template}.md"
        if not path.is_file():
            from lathe.errors import ConfigError

            known = ", ".join(sorted(p.stem for p in PROMPTS.glob("*.md")))
            raise ConfigError(f"judge.template: no prompt {template!r} (known: {known})", param="judge.template")
        self.system, _, self.user = path.read_text().partition("\n---\n")
        self.endpoint = endpoint
        self.constrained = constrained
        self.template = template
        self._client = endpoint.client()

    def verdict(self, question: str, answer_a: str, answer_b: str) -> Verdict:
        user = self.user.replace("{question}", question).replace("{answer_a}", answer_a).replace("{answer_b}", answer_b)
        messages = [{"role": "system", "content": self.system.strip()}, {"role": "user", "content": user.strip()}]
        extra = {"structured_outputs": {"choice": ["A", "B", "tie"]}} if self.constrained else None
        text, _ = ask(self._client, self.endpoint, messages, 4 if self.constrained else 512, extra_body=extra)
        return parse_verdict(text, self.constrained)


def judge_pair(judge: Any, question: str, candidate: str, champion: str) -> Outcome:
    """Both orders through ``judge.verdict(question, a, b)``; their combined outcome."""
    forward = judge.verdict(question, candidate, champion)
    backward = judge.verdict(question, champion, candidate)
    result, consistent = combine(forward, backward)
    return Outcome(question, candidate, champion, forward, backward, result, consistent)  # type: ignore[arg-type]
