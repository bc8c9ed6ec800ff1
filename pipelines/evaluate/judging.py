"""The judge step of an evaluation: both versions answer the same prompts, a judge compares them.

The candidate answers through the task's endpoint (its own server with ``serve: true``),
the champion through ``judge.champion`` (by default the gateway, which serves the alias
holder), and the judge through ``judge.endpoint``. The figures become ``eval_judge_*``
metrics on the run and ``lathe.eval.judge_*`` tags on the candidate, where a gate policy
reads them (``judge_win_rate``, ``judge_conclusive``, ``judge_position_consistency``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lathe.errors import AliasNotFoundError, ConfigError
from lathe.registry import ModelRegistry, ModelVersionInfo
from pipelines.evaluate.chat import Endpoint, ask
from pipelines.evaluate.config import EvaluateRecipe
from pipelines.evaluate.inputs import load_contexts
from pipelines.evaluate.pairwise import Judge, Outcome, judge_pair, summarize
from pipelines.evaluate.rubric import RubricJudge, grade_all


def champion_of(recipe: EvaluateRecipe, registry: ModelRegistry, version: ModelVersionInfo) -> str:
    """The version the candidate is judged against; a clear line when there is none."""
    alias = recipe.judge.against
    try:
        holder = registry.resolve(version.name, alias).version
    except AliasNotFoundError:
        raise ConfigError(
            f"judge.against: no version of {version.name} holds @{alias}: nothing to compare with",
            param="judge.against",
        ) from None
    if holder == version.version:
        raise ConfigError(
            f"judge.against: {version.name} v{version.version} holds @{alias} itself: nothing to compare with",
            param="judge.against",
        )
    return holder


def answer_all(
    endpoint: Endpoint,
    prompts: list[str],
    max_tokens: int,
    system: str | None,
    concurrency: int,
    on_done: Callable[[], None],
) -> tuple[list[str], set[str]]:
    """Every prompt's answer at temperature 0, in order, and the versions that gave them."""
    client = endpoint.client()

    def one(prompt: str) -> tuple[str, str | None]:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        answer = ask(client, endpoint, messages, max_tokens)
        on_done()
        return answer

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        answered = list(pool.map(one, prompts))
    return [text for text, _ in answered], {v for _, v in answered if v}


def judge_all(
    judge: Any, prompts: list[str], candidate: list[str], champion: list[str], concurrency: int, on_done
) -> list[Outcome]:
    def one(i: int) -> Outcome:
        outcome = judge_pair(judge, prompts[i], candidate[i], champion[i])
        on_done()
        return outcome

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(one, range(len(prompts))))


def run_judge(
    recipe: EvaluateRecipe,
    version: ModelVersionInfo,
    holder: str,
    prompts: list[str],
    candidate_answers: list[str],
    endpoints: Callable[..., Endpoint],
    progress: Callable[[str, int], Callable[[], None]],
) -> tuple[dict[str, Any], list[dict]]:
    """The champion's answers, both orders judged, the summary; and one row per prompt."""
    section = recipe.judge
    with contextlib.ExitStack() as stack:
        champion = endpoints(stack, section.champion, version.name, holder, field="judge.champion")
        champion_answers, served = answer_all(
            champion, prompts, section.max_tokens, recipe.task.system, section.concurrency,
            progress("champion answers", len(prompts)),
        )  # fmt: skip
    if served and served != {holder}:
        raise ConfigError(
            f"judge.champion: answers came from version(s) {', '.join(sorted(served))}, not @{section.against} "
            f"(v{holder}); a rollout may be running",
            param="judge.champion",
            hint="set judge.champion.serve: true to ask a server of exactly that version",
        )
    judge = Judge(endpoints(None, section.endpoint, version.name, None, field="judge.endpoint"),
                  section.template, section.constrained)  # fmt: skip
    outcomes = judge_all(judge, prompts, candidate_answers, champion_answers, section.concurrency,
                         progress("judged pairs", len(prompts)))  # fmt: skip
    summary = summarize(outcomes, section.bootstrap, section.confidence, section.seed)
    summary.update(champion_version=holder, judge_model=judge.endpoint.model, template=section.template)
    if section.rubric:
        summary["rubric"] = _rubric(section, judge.endpoint, prompts, candidate_answers, champion_answers, progress)
    return summary, [o.to_dict() for o in outcomes]


def _rubric(section, endpoint: Endpoint, prompts, candidate_answers, champion_answers, progress) -> dict:
    """Per criterion, both versions' mean grade."""
    contexts = load_contexts(section.prompts or "", section.max_prompts)
    grader = RubricJudge(endpoint, section.rubric_template, section.constrained)
    print(f"rubric: {', '.join(section.rubric)} on both versions' answers", flush=True)
    mine = grade_all(grader, list(section.rubric), prompts, candidate_answers, contexts, section.concurrency)
    theirs = grade_all(grader, list(section.rubric), prompts, champion_answers, contexts, section.concurrency)
    return {c: {"candidate": mine[c], "champion": theirs[c]} for c in mine}


def judge_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """The summary as the run's metrics (``eval_judge_*``, tagged ``lathe.eval.judge_*``)."""
    keys = ("win_rate", "position_consistency", "prompts", "wins", "losses", "ties")
    metrics = {f"eval_judge_{key}": float(summary[key]) for key in keys}
    metrics.update(
        eval_judge_win_rate_low=float(summary["low"]),
        eval_judge_win_rate_high=float(summary["high"]),
        eval_judge_conclusive=1.0 if summary["conclusive"] else 0.0,
    )
    for criterion, grades in summary.get("rubric", {}).items():
        metrics[f"eval_judge_rubric_{criterion}"] = grades["candidate"]
        metrics[f"eval_judge_rubric_{criterion}_champion"] = grades["champion"]
        metrics[f"eval_judge_rubric_{criterion}_delta"] = grades["candidate"] - grades["champion"]
    return metrics
