"""The evaluation gate: move an alias to a candidate only when it beats the alias holder.

    registry = ModelRegistry(settings.mlflow.uri)
    decision = promote_if_better(registry, "my-model", "4", alias="champion", metric="eval_token_f1", margin=0.01)
    decision.outcome   # "promoted" | "refused" | "unchanged"

Scores come from the versions themselves: ``python -m pipelines.evaluate`` writes its
metrics onto the version it scored as tags (``lathe.eval.token_f1``); a version without
that tag falls back to the metrics of the run that produced it (``eval_token_f1`` or
``token_f1``). Every decision is logged as a run in the ``lathe-gate`` experiment and
tagged on the candidate, so the registry says why an alias moved or did not.

This lives in the core (not in ``pipelines/evaluate``) because ``lathe models promote``
calls it, and ``lathe`` never imports ``pipelines``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from lathe.errors import AliasNotFoundError, ConfigError, InvalidRequestError
from lathe.gate_policy import Check, GatePolicy, higher_is_better_for, judge_policy, missing, short_metric
from lathe.registry import EVAL_TAG_PREFIX, ModelRegistry

GATE_EXPERIMENT = "lathe-gate"
DECISION_TAG = "lathe.gate.decision"
GATE_RUN_TAG = "lathe.gate.run_id"
EVAL_RUN_TAG = EVAL_TAG_PREFIX + "run_id"
DEFAULT_METRIC = "eval_token_f1"


def eval_tag(metric: str) -> str:
    return EVAL_TAG_PREFIX + short_metric(metric)


@dataclass(frozen=True)
class Decision:
    metric: str
    candidate_value: float
    champion_value: float | None
    margin: float
    higher_is_better: bool
    promote: bool
    reason: str
    checks: tuple[Check, ...] = ()  # under a policy: every metric's verdict

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide_policy(policy: GatePolicy, candidate: dict[str, float], champion: dict[str, float] | None) -> Decision:
    """Promote when every blocking metric of the policy passes; the first that fails is named."""
    checks = tuple(judge_policy(policy, candidate, champion))
    failed = [c for c in checks if c.blocking and not c.passed]
    lead = failed[0] if failed else checks[0]
    blocking = sum(c.blocking for c in checks)
    if failed:
        names = ", ".join(c.metric for c in failed)
        reason = f"blocking {names} failed: {lead.reason}" if len(failed) == 1 else f"blocking {names} failed"
    else:
        advisory = [c.metric for c in checks if not c.passed]
        reason = f"all {blocking} blocking metrics passed" + (
            f"; advisory {', '.join(advisory)} did not" if advisory else ""
        )
    return Decision(lead.metric, lead.candidate, lead.champion, 0.0, lead.higher_is_better, not failed, reason, checks)


def decide(
    candidate_value: float,
    champion_value: float | None,
    metric: str,
    margin: float = 0.0,
    higher_is_better: bool | None = None,
) -> Decision:
    """Promote when the candidate beats the champion by more than ``margin`` (in the metric's units).

    No champion value (nobody holds the alias yet): the candidate wins.
    """
    if margin < 0 or not math.isfinite(margin):
        raise ConfigError(f"margin: must be a finite number >= 0 (got {margin})", param="margin")
    if not math.isfinite(candidate_value):
        raise InvalidRequestError(f"the candidate's {metric} is {candidate_value}: not a score to promote on")
    up = higher_is_better_for(metric) if higher_is_better is None else higher_is_better
    word = "higher" if up else "lower"

    def made(promote: bool, reason: str) -> Decision:
        return Decision(metric, candidate_value, champion_value, margin, up, promote, reason)

    if champion_value is None:
        return made(True, "no current holder: the candidate wins")
    if not math.isfinite(champion_value):
        return made(True, f"the champion's {metric} is {champion_value}: any finite score beats it")
    gain = candidate_value - champion_value if up else champion_value - candidate_value
    if gain > margin:
        return made(True, f"{metric} {word} by {gain:.4g} (margin {margin:g})")
    if gain > 0:
        return made(False, f"{metric} {word} by only {gain:.4g}, not more than the margin {margin:g}")
    return made(False, f"{metric} is not {word} ({candidate_value:.4g} vs {champion_value:.4g}, {word} is better)")


def read_metric(registry: ModelRegistry, name: str, version: str, metric: str) -> float | None:
    """A version's score: its ``lathe.eval.*`` tag, else the metric on the run that produced it."""
    info = registry.get_version(name, version)
    tagged = info.tags.get(eval_tag(metric))
    if tagged is not None:
        try:
            return float(tagged)
        except ValueError:
            raise InvalidRequestError(f"{name} v{version}: tag {eval_tag(metric)}={tagged!r} is not a number") from None
    run = registry.version_run(name, version)
    metrics = run["metrics"] if run else {}
    for key in (metric, f"eval_{short_metric(metric)}", short_metric(metric)):
        if key in metrics:
            return float(metrics[key])
    return None


def _require_metric(registry: ModelRegistry, name: str, version: str, metric: str, role: str) -> float:
    value = read_metric(registry, name, version, metric)
    if value is None:
        raise InvalidRequestError(
            f"the {role} {name} v{version} has no {metric} (no tag {eval_tag(metric)}, no run metric)",
            param="metric",
            hint=f"score it first: python -m pipelines.evaluate --config pipelines/recipes/evaluate.yaml "
            f"--model models:/{name}/{version}",
        )
    return value


@dataclass(frozen=True)
class GateResult:
    """What the gate did: the decision plus which versions it weighed and where the alias ended."""

    name: str
    alias: str
    against: str
    candidate_version: str
    champion_version: str | None
    decision: Decision
    outcome: str  # promoted | refused | unchanged | canary
    previous_version: str | None  # the holder of ``alias`` before
    version: str | None  # the holder of ``alias`` after
    run_id: str | None = None
    report: str | None = None  # the decision's HTML page, when one was written

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "alias": self.alias,
            "candidate_version": self.candidate_version,
            "champion_version": self.champion_version,
            "metric": self.decision.metric,
            "candidate_value": self.decision.candidate_value,
            "champion_value": self.decision.champion_value,
            "margin": self.decision.margin,
            "decision": self.outcome,
            "reason": self.decision.reason,
            "previous_version": self.previous_version,
            "version": self.version,
            "gate_run_id": self.run_id,
            "checks": [c.to_dict() for c in self.decision.checks],
            "report": self.report,
        }


def promote_if_better(
    registry: ModelRegistry,
    name: str,
    candidate_version: str | int,
    alias: str = "champion",
    metric: str = DEFAULT_METRIC,
    margin: float = 0.0,
    *,
    against: str | None = None,
    higher_is_better: bool | None = None,
    before_move: Callable[[GateResult], None] | None = None,
    log: bool = True,
    move: bool = True,
    policy: GatePolicy | None = None,
    report_dir: Path | None = None,
) -> GateResult:
    """Compare the candidate with the holder of ``against`` (default: ``alias``); move ``alias`` if it wins.

    With a ``policy`` every metric it lists is judged (``metric`` and ``margin`` are then
    unused) and the candidate wins when every blocking one passes. A logged decision gets an
    HTML report (``lathe.gate_report``) in its run, and in ``report_dir`` when one is given.

    ``before_move`` runs after the decision and before the alias moves; if it raises,
    nothing moves. With ``move`` false a winning candidate is outcome ``canary``: it
    passed, and a rollout at the gateway will move the alias. The decision is logged to
    MLflow unless ``log`` is false.
    """
    candidate = registry.get_version(name, str(candidate_version)).version
    against = against or alias
    try:
        holder: str | None = registry.resolve(name, against).version
    except AliasNotFoundError:
        holder = None
    previous = holder if against == alias else _holder(registry, name, alias)
    if policy is not None:
        values = _policy_values(registry, name, candidate, policy, "candidate")
        metric = policy.metrics[0].name
        candidate_value = values[metric]
    else:
        candidate_value = _require_metric(registry, name, candidate, metric, "candidate")
    if holder == candidate:
        # Nothing to beat: the candidate is the holder it would be compared with.
        up = higher_is_better_for(metric) if higher_is_better is None else higher_is_better
        already = previous == candidate
        reason = f"v{candidate} already holds @{alias}" if already else f"v{candidate} is the @{against} holder itself"
        decision = Decision(metric, candidate_value, candidate_value, margin, up, False, reason)
        outcome = "unchanged" if already else "refused"
    elif policy is not None:
        champion = _policy_values(registry, name, holder, policy, "champion") if holder else None
        decision = decide_policy(policy, values, champion)
        outcome = "promoted" if decision.promote else "refused"
    else:
        champion_value = _require_metric(registry, name, holder, metric, f"@{against} holder") if holder else None
        decision = decide(candidate_value, champion_value, metric, margin, higher_is_better)
        outcome = "promoted" if decision.promote else "refused"
    result = GateResult(name, alias, against, candidate, holder, decision, outcome, previous, previous)
    if decision.promote and not move:
        result = replace(result, outcome="canary")
    elif decision.promote:
        if before_move is not None:
            before_move(result)
        registry.set_alias(name, alias, candidate)
        result = replace(result, version=candidate)
    if log:
        result = _log_decision(registry, result)
        result = _report(registry, result, report_dir)
    return result


def _report(registry: ModelRegistry, result: GateResult, folder: Path | None) -> GateResult:
    from lathe import gate_report

    html = gate_report.render(result, gate_report.evidence(registry, result))
    registry.client.log_text(result.run_id, html, "report.html")
    return replace(result, report=str(gate_report.write(result, html, folder))) if folder else result


def _holder(registry: ModelRegistry, name: str, alias: str) -> str | None:
    try:
        return registry.resolve(name, alias).version
    except AliasNotFoundError:
        return None


def _log_decision(registry: ModelRegistry, result: GateResult) -> GateResult:
    """One run per decision in ``lathe-gate``, and the outcome tagged on the candidate."""
    import time

    from mlflow.entities import Metric, Param, RunTag

    client = registry.client
    experiment = client.get_experiment_by_name(GATE_EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(GATE_EXPERIMENT)
    tags = {DECISION_TAG: result.outcome, "lathe.stage": "gate", "lathe.gate.model": result.name}
    run = client.create_run(experiment_id, run_name=f"gate-{result.name}-v{result.candidate_version}", tags=tags)
    run_id = run.info.run_id
    d = result.decision
    params = {
        "name": result.name,
        "alias": result.alias,
        "against": result.against,
        "metric": d.metric,
        "margin": d.margin,
        "higher_is_better": d.higher_is_better,
        "candidate_version": result.candidate_version,
        "champion_version": result.champion_version or "none",
    }
    now = int(time.time() * 1000)
    metrics = [Metric("candidate_value", d.candidate_value, now, 0)]
    if d.champion_value is not None and math.isfinite(d.champion_value):
        metrics.append(Metric("champion_value", d.champion_value, now, 0))
    figures = {}  # under a policy: both versions' figure for every metric
    for check in d.checks:
        figures[f"candidate.{check.metric}"] = check.candidate
        if check.champion is not None and math.isfinite(check.champion):
            figures[f"champion.{check.metric}"] = check.champion
    metrics += [Metric(key, value, now, 0) for key, value in figures.items() if math.isfinite(value)]
    if d.checks:
        params["policy"] = ", ".join(c.metric for c in d.checks)
        client.log_dict(run_id, {"checks": [c.to_dict() for c in d.checks]}, "gate_checks.json")
    client.log_batch(
        run_id,
        metrics=metrics,
        params=[Param(k, str(v)) for k, v in params.items()],
        tags=[RunTag("lathe.gate.reason", d.reason[:5000])],
    )
    client.set_terminated(run_id, status="FINISHED")
    registry.set_version_tag(result.name, result.candidate_version, DECISION_TAG, result.outcome)
    registry.set_version_tag(result.name, result.candidate_version, GATE_RUN_TAG, run_id)
    return replace(result, run_id=run_id)


def _policy_values(registry: ModelRegistry, name: str, version: str, policy: GatePolicy, role: str):
    values = {metric: read_metric(registry, name, version, metric) for metric in policy.names()}
    absent = missing(policy, values)
    if absent and role == "candidate":
        raise InvalidRequestError(
            f"the policy names {', '.join(absent)}, which no evaluation produced for {name} v{version} "
            f"(no tag {eval_tag(absent[0])}, no run metric)",
            param="policy",
            hint="run the evaluation that produces it, or take the metric out of the policy",
        )
    return {k: v for k, v in values.items() if v is not None}
