"""Submitting pipeline entry points as Ray jobs and following them.

The local head from ``lathe up`` runs with token authentication; ``ray_headers``
reads its token so the Jobs API accepts us. A remote cluster is reached with
``--address`` (and ``RAY_AUTH_TOKEN`` when it uses tokens).
"""

from __future__ import annotations

import asyncio
import json
import logging
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lathe.errors import EngineUnavailableError, PlatformError
from lathe.settings import LatheSettings

# What a pipeline prints for ``lathe train submit``: progress lines from the training
# loop, and one result line at the end (both survive Ray's log forwarding as text).
PROGRESS_PREFIX = "lathe-progress"
RESULT_PREFIX = "LATHE_RESULT "


class StageResult(BaseModel):
    """What every pipeline stage hands back, as the JSON of its ``LATHE_RESULT`` line.

    ``lathe train submit --json`` prints it (with ``job_id``), ``lathe data curate`` finds
    the stage's output through it, and the demo reads its keys. A newer stage may add
    keys: they are kept.
    """

    model_config = ConfigDict(extra="allow")

    stage: str  # tokenizer, pretrain, sft, dpo, evaluate, curation
    name: str  # the recipe's name
    status: str = "FINISHED"
    run_id: str | None = None  # the MLflow run
    mlflow_url: str | None = None  # the run in MLflow's UI
    model_name: str | None = None  # the registered (or scored) model
    model_version: str | None = None
    model_path: str | None = None  # a local folder of the model (or tokenizer)
    output: str | None = None  # what the stage wrote: a model or tokenizer folder, curated data
    checkpoints: str | None = None  # training stages: where the checkpoints are kept
    steps: int = 0
    seconds: float | None = None
    metrics: dict[str, int | float] = Field(default_factory=dict)  # the stage's key figures

    def line(self) -> str:
        return RESULT_PREFIX + json.dumps(self.model_dump(mode="json"))

    @classmethod
    def parse(cls, data: dict[str, Any]) -> StageResult:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
            raise PlatformError(f"the stage's result line is not a Lathe result ({fields})") from None

    @classmethod
    def from_line(cls, line: str) -> StageResult | None:
        """The result a ``LATHE_RESULT`` line carries; None for any other line."""
        if not line.startswith(RESULT_PREFIX):
            return None
        try:
            data = json.loads(line[len(RESULT_PREFIX) :])
        except json.JSONDecodeError:
            raise PlatformError("the stage's result line is not JSON") from None
        return cls.parse(data)


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """An MLflow run in the MLflow UI."""
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def progress_line(step: int, total: int, metrics: dict[str, float]) -> str:
    parts = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
    return f"{PROGRESS_PREFIX} step={step}/{total} {parts}"


def parse_progress(line: str) -> dict[str, float] | None:
    """Read a progress line back: ``{"step", "total", metric: value}``; None for other lines."""
    if PROGRESS_PREFIX not in line:
        return None
    out: dict[str, float] = {}
    for token in line.split(PROGRESS_PREFIX, 1)[1].split():
        key, _, value = token.partition("=")
        try:
            if key == "step":
                done, _, total = value.partition("/")
                out["step"], out["total"] = float(done), float(total)
            else:
                out[key] = float(value)
        except ValueError:
            continue
    return out if "step" in out else None


@dataclass
class JobOutcome:
    job_id: str
    status: str
    seconds: float


def ray_headers(settings: LatheSettings) -> dict[str, str]:
    token = settings.ray.auth_token.get_secret_value() if settings.ray.auth_token else None
    path = settings.home / "ray" / "auth_token"
    if not token and path.exists():
        token = path.read_text().strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def jobs_client(settings: LatheSettings, address: str | None = None):
    from ray.job_submission import JobSubmissionClient

    address = address or settings.ray.jobs_address
    try:
        return JobSubmissionClient(address, headers=ray_headers(settings))
    except Exception as exc:  # the client raises plain exceptions for connection problems
        raise EngineUnavailableError(
            f"no Ray Jobs API at {address} ({type(exc).__name__})", hint="start it with `lathe up` or pass --address"
        ) from None


def submit(
    settings: LatheSettings,
    argv: list[str],
    *,
    address: str | None = None,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    metadata: dict[str, str] | None = None,
) -> str:
    """Queue ``argv`` as a Ray job (run in ``cwd`` on the head when given); its id."""
    client = jobs_client(settings, address)
    entrypoint = shlex.join(argv)
    if cwd:
        entrypoint = f"cd {shlex.quote(cwd)} && {entrypoint}"
    return client.submit_job(
        entrypoint=entrypoint,
        runtime_env={"env_vars": env or {}},
        metadata={"submitted_by": "lathe", **(metadata or {})},
    )


def follow(
    settings: LatheSettings,
    job_id: str,
    *,
    address: str | None = None,
    on_line: Callable[[str], None] = print,
    started: float | None = None,
) -> JobOutcome:
    """Stream a job's logs line by line until it ends; raise PlatformError unless it succeeded."""
    from ray.job_submission import JobStatus

    client = jobs_client(settings, address)
    started = started or time.monotonic()
    # The SDK logs "WebSocket closed …" at INFO when the job's log ends: not news to the user.
    logging.getLogger("ray.dashboard.modules.job.sdk").setLevel(logging.WARNING)

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            for line in chunk.splitlines():
                on_line(line)

    try:
        asyncio.run(tail())
    except KeyboardInterrupt:
        client.stop_job(job_id)
        raise
    while (status := client.get_job_status(job_id)) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
        time.sleep(0.5)
    outcome = JobOutcome(job_id, str(status.value), time.monotonic() - started)
    if status != JobStatus.SUCCEEDED:
        info = client.get_job_info(job_id)
        raise PlatformError(f"Ray job {job_id} {outcome.status}: {(info.message or '').strip()[:300]}")
    return outcome


def submit_and_follow(
    settings: LatheSettings,
    argv: list[str],
    *,
    address: str | None = None,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    on_line: Callable[[str], None] = print,
) -> JobOutcome:
    """Submit ``argv`` as a Ray job, stream its logs line by line, wait for the end."""
    started = time.monotonic()
    job_id = submit(settings, argv, address=address, env=env, cwd=cwd)
    return follow(settings, job_id, address=address, on_line=on_line, started=started)
