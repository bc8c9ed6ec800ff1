"""The agent's metrics (``lathe_agent_*``), in a registry of its own, served at ``GET /metrics``."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

from lathe.telemetry import new_registry

_RUN_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
_STEP_BUCKETS = (1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50)
_TOOL_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

# Outcomes of a tool call: ran (ok, error, timeout) or never ran (invalid, denied, unknown).
OUTCOMES = ("ok", "error", "timeout", "invalid", "denied", "unknown")


@dataclass
class AgentMetrics:
    registry: CollectorRegistry
    tool_calls: Counter
    tool_latency: Histogram
    steps: Histogram
    runs: Counter
    run_latency: Histogram
    tokens: Counter
    retries: Counter

    @classmethod
    def create(cls) -> AgentMetrics:
        r = new_registry()
        return cls(
            registry=r,
            tool_calls=Counter(
                "lathe_agent_tool_calls_total", "Tool calls by tool and outcome", ["tool", "outcome"], registry=r
            ),
            tool_latency=Histogram(
                "lathe_agent_tool_duration_seconds", "Time a tool took to run", ["tool"],
                buckets=_TOOL_BUCKETS, registry=r,
            ),
            steps=Histogram(
                "lathe_agent_steps_per_run", "Model calls per run", ["agent"], buckets=_STEP_BUCKETS, registry=r
            ),
            runs=Counter("lathe_agent_runs_total", "Runs by agent and final status", ["agent", "status"], registry=r),
            run_latency=Histogram(
                "lathe_agent_run_seconds", "Run duration, first step to answer", ["agent"],
                buckets=_RUN_BUCKETS, registry=r,
            ),
            tokens=Counter(
                "lathe_agent_tokens_total", "Tokens the agent spent, by agent and direction (in/out)",
                ["agent", "direction"], registry=r,
            ),
            retries=Counter(
                "lathe_agent_retries_total", "Replies sent back to the model, by reason", ["reason"], registry=r
            ),
        )  # fmt: skip

    def prime(self, agents: list[str]) -> None:
        """Create each agent's series at zero, so its first run is an increase a rate can see."""
        for agent in agents:
            for status in ("completed", "max_steps", "failed"):
                self.runs.labels(agent=agent, status=status)
            self.steps.labels(agent=agent)
            self.run_latency.labels(agent=agent)
            for direction in ("in", "out"):
                self.tokens.labels(agent=agent, direction=direction)

    def tool_label(self, name: str, known: set[str]) -> str:
        """A model can invent any name: unknown ones share one label so cardinality stays bounded."""
        return name if name in known else "_unknown"
