"""A gate policy: every metric a release is judged on, each with its rule and whether it blocks.

    policy = load_policy(Path("pipelines/recipes/gate-policy.yaml"))
    checks = judge_policy(policy, {"token_f1": 0.41, "perplexity": 9.8}, {"token_f1": 0.39, "perplexity": 9.7})
    all(c.passed for c in checks if c.blocking)   # promote?

A policy file lists metrics. Each has a direction (``higher`` or ``lower`` is better;
by default from the name: perplexity, loss and error rates are ``lower``) and rules:

- ``min_gain``: the candidate must beat the champion by more than this;
- ``max_loss``: the candidate may be worse than the champion by at most this;
- ``relative: true``: those two are fractions of the champion's value (0.02 = 2 %);
- ``at_least`` / ``at_most``: a bound on the candidate alone (a judge's win rate, a
  safety pass rate), whatever the champion scored.

``blocking`` (default true) metrics decide; the others are reported beside them. A
comparison with a champion that lacks the metric (or with no champion at all) passes,
and says so. A candidate that lacks a metric the policy names is an error: the gate
never decides on figures nobody measured.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lathe.errors import ConfigError

_LOWER_IS_BETTER = ("perplexity", "loss", "nll", "error", "wer", "cer")
_EPSILON = 1e-9  # floating-point slack when a figure sits exactly on a limit


def short_metric(metric: str) -> str:
    """``eval_token_f1`` → ``token_f1``: the name under ``lathe.eval.`` on a version."""
    return metric.removeprefix("eval_")


def higher_is_better_for(metric: str) -> bool:
    name = short_metric(metric).lower()
    return not any(word in name for word in _LOWER_IS_BETTER)


class PolicyMetric(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    direction: Literal["higher", "lower"] | None = None
    min_gain: float | None = Field(default=None, ge=0)
    max_loss: float | None = Field(default=None, ge=0)
    relative: bool = False
    at_least: float | None = None
    at_most: float | None = None
    blocking: bool = True

    @field_validator("min_gain", "max_loss", "at_least", "at_most")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @model_validator(mode="after")
    def _one_meaning(self) -> PolicyMetric:
        if self.min_gain is not None and self.max_loss is not None:
            raise ValueError("min_gain and max_loss contradict each other: set one")
        if all(v is None for v in (self.min_gain, self.max_loss, self.at_least, self.at_most)):
            raise ValueError("no rule: set min_gain, max_loss, at_least or at_most")
        if self.at_least is not None and self.at_most is not None and self.at_least > self.at_most:
            raise ValueError(f"at_least {self.at_least:g} is above at_most {self.at_most:g}: nothing can pass")
        return self

    @property
    def higher(self) -> bool:
        return self.direction == "higher" if self.direction else higher_is_better_for(self.name)


class GatePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metrics: list[PolicyMetric] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_direction_per_metric(self) -> GatePolicy:
        seen: dict[str, bool] = {}
        for metric in self.metrics:
            key = short_metric(metric.name)
            if key in seen and seen[key] != metric.higher:
                raise ValueError(f"{metric.name} is both higher- and lower-is-better: contradictory directions")
            seen[key] = metric.higher
        return self

    def names(self) -> list[str]:
        return list(dict.fromkeys(m.name for m in self.metrics))


def load_policy(path: Path) -> GatePolicy:
    """Read and check a policy file; a bad one is one ConfigError line naming the field."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"policy {path} cannot be read: {exc.strerror or exc}", param="policy") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"policy {path} is not valid YAML: {exc}", param="policy") from None
    return parse_policy(data, source=str(path))


def parse_policy(data: Any, source: str = "policy") -> GatePolicy:
    try:
        return GatePolicy.model_validate(data)
    except ValidationError as exc:
        item = exc.errors()[0]
        where = ".".join(str(part) for part in item["loc"]) or "the file"
        message = item["msg"].removeprefix("Value error, ")
        raise ConfigError(f"policy {source}: {where}: {message}", param="policy") from None


@dataclass(frozen=True)
class Check:
    """One metric's verdict: the figures, the rule, and why it passed or failed."""

    metric: str
    candidate: float
    champion: float | None
    higher_is_better: bool
    rule: str
    blocking: bool
    passed: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge_policy(policy: GatePolicy, candidate: dict[str, float], champion: dict[str, float] | None) -> list[Check]:
    """Every metric of the policy, judged; ``candidate`` must hold them all (see ``missing``)."""
    return [_check(m, candidate[m.name], (champion or {}).get(m.name)) for m in policy.metrics]


def missing(policy: GatePolicy, values: dict[str, float | None]) -> list[str]:
    return [name for name in policy.names() if values.get(name) is None]


def _check(metric: PolicyMetric, value: float, champion: float | None) -> Check:
    up = metric.higher
    failures: list[str] = []
    notes: list[str] = []
    if metric.at_least is not None and not value >= metric.at_least:
        failures.append(f"{value:.4g} is below {metric.at_least:g}")
    if metric.at_most is not None and not value <= metric.at_most:
        failures.append(f"{value:.4g} is above {metric.at_most:g}")
    if metric.min_gain is not None or metric.max_loss is not None:
        if champion is None or not math.isfinite(champion):
            notes.append("no champion value to compare with")
        else:
            failures += _compare(metric, value, champion, up, notes)
    if not math.isfinite(value):
        failures.append(f"the candidate's value is {value}")
    passed = not failures
    reason = "; ".join(failures) if failures else "; ".join(notes) or "within the rule"
    return Check(metric.name, value, champion, up, _rule(metric), metric.blocking, passed, reason)


def _compare(metric: PolicyMetric, value: float, champion: float, up: bool, notes: list[str]) -> list[str]:
    gain = value - champion if up else champion - value
    scale = abs(champion) if metric.relative else 1.0
    shown = (lambda x: f"{x / scale:.2%}") if metric.relative and scale else (lambda x: f"{x:.4g}")
    word = "better" if gain >= 0 else "worse"
    notes.append(f"{word} by {shown(abs(gain))}" if gain else "the same as the champion")
    if metric.min_gain is not None and not gain > metric.min_gain * scale:
        return [f"{word} by {shown(abs(gain))}, needs better by more than {_amount(metric.min_gain, metric)}"]
    # A loss exactly at the limit is allowed: 0.95 against 1.0 is 5 %, not 5.000000000000004 %.
    if metric.max_loss is not None and -gain > metric.max_loss * scale + _EPSILON * max(1.0, scale):
        return [f"worse by {shown(-gain)}, more than the {_amount(metric.max_loss, metric)} allowed"]
    return []


def _amount(x: float, metric: PolicyMetric) -> str:
    return f"{x:.2%}" if metric.relative else f"{x:g}"


def _rule(metric: PolicyMetric) -> str:
    parts = []
    if metric.min_gain is not None:
        parts.append(f"better by > {_amount(metric.min_gain, metric)}")
    if metric.max_loss is not None:
        parts.append(f"worse by ≤ {_amount(metric.max_loss, metric)}")
    if metric.at_least is not None:
        parts.append(f"≥ {metric.at_least:g}")
    if metric.at_most is not None:
        parts.append(f"≤ {metric.at_most:g}")
    return (", ".join(parts)) + f" ({'higher' if metric.higher else 'lower'} is better)"
