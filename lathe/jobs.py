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


def submit_and_follow(
    settings: LatheSettings,
    argv: list[str],
    *,
    address: str | None = None,
    env: dict[str, str] | None = None,
    on_line: Callable[[str], None] = print,
) -> JobOutcome:
    """Submit ``argv`` as a Ray job, stream its logs line by line, wait for the end."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    address = address or settings.ray.jobs_address
    started = time.monotonic()
    try:
        client = JobSubmissionClient(address, headers=ray_headers(settings))
    except Exception as exc:  # the client raises plain exceptions for connection problems
        raise EngineUnavailableError(
            f"no Ray Jobs API at {address} ({type(exc).__name__})", hint="start it with `lathe up` or pass --address"
        ) from None
    job_id = client.submit_job(
        entrypoint=shlex.join(argv),
        runtime_env={"env_vars": env or {}},
        metadata={"submitted_by": "lathe"},
    )

    async def follow() -> None:
        async for chunk in client.tail_job_logs(job_id):
            for line in chunk.splitlines():
                on_line(line)

    try:
        asyncio.run(follow())
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
