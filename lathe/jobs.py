"""Submitting pipeline entry points as Ray jobs and following them.

The local head from ``lathe up`` runs with token authentication; ``ray_headers``
reads its token so the Jobs API accepts us. A remote cluster is reached with
``--address`` (and ``RAY_AUTH_TOKEN`` when it uses tokens).
"""

from __future__ import annotations

import asyncio
import os
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass

from lathe.errors import EngineUnavailableError, PlatformError
from lathe.settings import LatheSettings

# What a pipeline prints for ``lathe train submit``: progress lines from the training
# loop, and one result line at the end (both survive Ray's log forwarding as text).
PROGRESS_PREFIX = "lathe-progress"
RESULT_PREFIX = "LATHE_RESULT "


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
    token = os.environ.get("RAY_AUTH_TOKEN")
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
