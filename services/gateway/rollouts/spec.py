"""What a rollout is: the candidate, its steps and the thresholds it is judged by.

    {"model": "smollm2-135m-instruct", "version": "4",
     "steps": [{"weight": 5}, {"weight": 25}, {"weight": 50}],
     "thresholds": {"max_error_rate_delta": 1.0, "max_ttft_p95_ratio": 1.5}}

A step gives the candidate ``weight`` percent of the traffic for at least
``min_duration_s`` and until the candidate has served ``min_requests``; then its window
is compared with the champion's in the same window. Passing the last step is the
promotion (100 %): a step of 100 may close the list and means just that.
"""

from __future__ import annotations

import itertools

from pydantic import BaseModel, ConfigDict, Field, field_validator

ACTIVE_STATES = ("waiting", "running")
STATES = (*ACTIVE_STATES, "promoted", "rolled_back")


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weight: float = Field(gt=0, le=100, description="Percent of the model's traffic for the candidate.")
    min_duration_s: float = Field(default=60.0, ge=0, le=86400)
    min_requests: int = Field(default=20, ge=0, le=10_000_000)


class Thresholds(BaseModel):
    """Limits relative to the champion in the same window; a candidate past any one is rolled back."""

    model_config = ConfigDict(extra="forbid")

    # Percentage points: 1.0 allows the candidate 1 % more failed requests than the champion.
    max_error_rate_delta: float = Field(default=1.0, ge=0, le=100)
    # Candidate p95 over champion p95; 1.5: up to half again as slow.
    max_ttft_p95_ratio: float = Field(default=1.5, ge=1, le=100)
    max_itl_p95_ratio: float = Field(default=1.5, ge=1, le=100)
    # A latency ratio counts only when the candidate is also slower by more than this many
    # seconds: on fast backends a few milliseconds of noise make large ratios.
    min_ttft_delta_s: float = Field(default=0.05, ge=0, le=60)
    min_itl_delta_s: float = Field(default=0.005, ge=0, le=60)
    # Online quality (feedback and judge scores, 0..1): how far the candidate's mean may fall below.
    max_quality_drop: float = Field(default=0.1, ge=0, le=1)
    min_quality_samples: int = Field(default=10, ge=1, le=1_000_000)
    # Latency ratios are only read once both versions have this many samples in the window.
    min_latency_samples: int = Field(default=5, ge=1, le=1_000_000)


class Judge(BaseModel):
    """An LLM judge that scores sampled non-streamed chat answers of both versions (1-10)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=256, description="A model the gateway serves.")
    sample_rate: float = Field(default=0.2, gt=0, le=1)


DEFAULT_STEPS = (5.0, 25.0, 50.0)


class Rollback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=256)
    reason: str = Field(default="", max_length=500)
    requested_by: str = Field(default="admin", max_length=128)


class Feedback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=128)
    # 0 (bad) to 1 (good); thumbs up/down are 1 and 0.
    score: float = Field(ge=0, le=1)
    comment: str = Field(default="", max_length=2000)


class RolloutSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=256)
    version: str = Field(pattern=r"^[0-9]+$", max_length=16)
    alias: str = Field(default="champion", pattern=r"^[A-Za-z][\w\-]*$", max_length=64)
    steps: list[Step] = Field(default_factory=lambda: [Step(weight=w) for w in DEFAULT_STEPS], min_length=1)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    judge: Judge | None = None
    # How long the rollout waits for a healthy backend of the candidate version.
    backend_wait_s: float = Field(default=600.0, gt=0, le=86400)
    reason: str = Field(default="", max_length=500)
    # Who asked (the CLI sends user@host); recorded in the history and in MLflow.
    requested_by: str = Field(default="admin", max_length=128)

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: list[Step]) -> list[Step]:
        weights = [s.weight for s in steps]
        if any(b <= a for a, b in itertools.pairwise(weights)):
            raise ValueError(f"weights must increase from step to step (got {weights})")
        if weights[-1] == 100:
            if len(steps) == 1:
                raise ValueError("a rollout needs a step below 100 % (100 % is the promotion itself)")
            steps = steps[:-1]  # 100 % is the promotion itself
        return steps
