"""Windows of figures per version, and the decision for one step of a rollout.

Latencies go into log-spaced buckets (each 10 % wider than the one before, from 1 ms),
so windows recorded on several gateway replicas add up exactly and a p95 read from
the sum is within 10 % of the true one. Written here rather than with a sketch library
because the figures must merge through the gateway's database as plain JSON.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from services.gateway.rollouts.spec import Step, Thresholds

_BASE_S = 0.001
_GROWTH = 1.1


def bucket_of(seconds: float) -> int:
    if seconds <= _BASE_S:
        return 0
    return int(math.log(seconds / _BASE_S, _GROWTH)) + 1


def bucket_upper(index: int) -> float:
    return _BASE_S * _GROWTH**index


@dataclass
class Window:
    """What one version did in one step: requests, errors, latencies and quality scores."""

    requests: int = 0
    errors: int = 0
    ttft: dict[int, int] = field(default_factory=dict)
    itl: dict[int, int] = field(default_factory=dict)
    quality_sum: float = 0.0
    quality_n: int = 0

    def record(self, ok: bool, ttft_s: float | None = None, itl_s: float | None = None) -> None:
        self.requests += 1
        if not ok:
            self.errors += 1
        if ttft_s is not None:
            index = bucket_of(ttft_s)
            self.ttft[index] = self.ttft.get(index, 0) + 1
        if itl_s is not None:
            index = bucket_of(itl_s)
            self.itl[index] = self.itl.get(index, 0) + 1

    def score(self, value: float) -> None:
        self.quality_sum += value
        self.quality_n += 1

    def add(self, other: Window) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.quality_sum += other.quality_sum
        self.quality_n += other.quality_n
        for mine, theirs in ((self.ttft, other.ttft), (self.itl, other.itl)):
            for index, count in theirs.items():
                mine[index] = mine.get(index, 0) + count

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def quality(self) -> float | None:
        return self.quality_sum / self.quality_n if self.quality_n else None

    @staticmethod
    def p95(buckets: dict[int, int]) -> float | None:
        total = sum(buckets.values())
        if not total:
            return None
        rank = math.ceil(0.95 * total)
        seen = 0
        for index in sorted(buckets):
            seen += buckets[index]
            if seen >= rank:
                return bucket_upper(index)
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "ttft": {str(k): v for k, v in self.ttft.items()},
            "itl": {str(k): v for k, v in self.itl.items()},
            "quality_sum": self.quality_sum,
            "quality_n": self.quality_n,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Window:
        return cls(
            requests=int(data.get("requests", 0)),
            errors=int(data.get("errors", 0)),
            ttft={int(k): int(v) for k, v in (data.get("ttft") or {}).items()},
            itl={int(k): int(v) for k, v in (data.get("itl") or {}).items()},
            quality_sum=float(data.get("quality_sum", 0.0)),
            quality_n=int(data.get("quality_n", 0)),
        )

    def figures(self) -> dict[str, Any]:
        """What a person reads: counts, rates and p95s rounded."""
        ttft, itl, quality = self.p95(self.ttft), self.p95(self.itl), self.quality
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate_pct": round(100 * self.error_rate, 2),
            "ttft_p95_s": round(ttft, 4) if ttft is not None else None,
            "itl_p95_s": round(itl, 5) if itl is not None else None,
            "quality": round(quality, 3) if quality is not None else None,
            "quality_samples": self.quality_n,
        }


@dataclass(frozen=True)
class Verdict:
    action: str  # wait | advance | rollback
    reason: str


def breach(thresholds: Thresholds, champion: Window, candidate: Window, min_requests: int) -> str | None:
    """Why the candidate is worse than the thresholds allow, or None."""
    if candidate.requests >= max(min_requests, 1):
        delta = 100 * (candidate.error_rate - champion.error_rate)
        if delta > thresholds.max_error_rate_delta:
            return (
                f"error rate {100 * candidate.error_rate:.1f} % vs the champion's {100 * champion.error_rate:.1f} % "
                f"(+{delta:.1f} points, limit {thresholds.max_error_rate_delta:g})"
            )
    for name, mine, theirs, limit, floor in (
        ("TTFT", candidate.ttft, champion.ttft, thresholds.max_ttft_p95_ratio, thresholds.min_ttft_delta_s),
        ("inter-token latency", candidate.itl, champion.itl, thresholds.max_itl_p95_ratio, thresholds.min_itl_delta_s),
    ):
        enough = min(sum(mine.values()), sum(theirs.values())) >= thresholds.min_latency_samples
        ours, base = Window.p95(mine), Window.p95(theirs)
        slower = enough and ours is not None and base is not None and ours - base > floor
        if slower and ours / base > limit:
            return f"{name} p95 {ours:.3f} s vs the champion's {base:.3f} s (×{ours / base:.2f}, limit ×{limit:g})"
    if min(candidate.quality_n, champion.quality_n) >= thresholds.min_quality_samples:
        drop = (champion.quality or 0.0) - (candidate.quality or 0.0)
        if drop > thresholds.max_quality_drop:
            return (
                f"quality {candidate.quality:.2f} vs the champion's {champion.quality:.2f} "
                f"(-{drop:.2f}, limit {thresholds.max_quality_drop:g})"
            )
    return None


def judge_step(step: Step, thresholds: Thresholds, champion: Window, candidate: Window, elapsed_s: float) -> Verdict:
    """Roll back as soon as the candidate is past a threshold; advance once the step is long and full enough."""
    why = breach(thresholds, champion, candidate, step.min_requests)
    if why is not None:
        return Verdict("rollback", why)
    if elapsed_s < step.min_duration_s:
        return Verdict("wait", f"{elapsed_s:.0f} of {step.min_duration_s:g} s")
    if candidate.requests < step.min_requests:
        return Verdict("wait", f"{candidate.requests} of {step.min_requests} requests on the candidate")
    return Verdict("advance", f"within thresholds after {elapsed_s:.0f} s and {candidate.requests} requests")
