"""Wait until a supervised process is healthy: an HTTP health URL or a caller's check.

``HealthWait`` polls until a deadline (``wait`` in plain code, ``wait_async`` in an event
loop) and fails as soon as the process exits, naming its log and quoting the log's last
lines, in the error class and wording the caller chose (``StartErrors``).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from lathe.errors import LatheError, PlatformError
from lathe.supervisor.process import Supervised

OnWait = Callable[[float, str], None]


@dataclass(frozen=True)
class Health:
    """One look at a process: ``detail`` says why it is not healthy yet, ``code`` is its answer's JSON code."""

    ok: bool
    detail: str = "waiting"
    code: str | None = None


Check = Callable[[], "Health | bool | Awaitable[Health | bool]"]


@dataclass(frozen=True)
class StartErrors:
    """What a failed start raises: the class, and the wording with ``{subject}`` (default: the
    health URL, else the process's name), ``{code}``, ``{timeout_s}`` and ``{detail}`` filled in."""

    subject: str | None = None
    kind: type[LatheError] = PlatformError
    exited: str = "{subject} exited with code {code}"
    timed_out: str = "{subject} was not healthy after {timeout_s:.0f}s ({detail})"
    gave_up: str = "{subject} is not healthy: {detail}"


@dataclass
class HealthWait:
    """Wait until ``check`` says healthy: a URL that answers 200, or a callable returning
    ``Health`` or a bool (or an awaitable of one, under ``wait_async``).

    Fails once ``timeout_s`` has passed, or at once when ``process`` exits. A health
    answer whose JSON ``code`` is in ``give_up_codes`` names a condition that waiting does
    not cure (another process holds a folder): once it has lasted ``give_up_after_s`` the
    wait fails with that answer's detail. On success ``process`` remembers its descendants.
    """

    check: str | Check
    timeout_s: float
    process: Supervised | None = None
    headers: dict[str, str] | None = None
    on_wait: OnWait | None = None
    give_up_codes: frozenset[str] = frozenset()
    give_up_after_s: float = 10.0
    interval_s: float = 0.5
    errors: StartErrors | None = None
    _started: float = field(default=0.0, init=False, repr=False)
    _stuck_since: float | None = field(default=None, init=False, repr=False)  # a give-up code's first answer

    def wait(self) -> None:
        probe = self.check if callable(self.check) else lambda: _http_health(self.check, self.headers)
        self._started, self._stuck_since = time.monotonic(), None
        while True:
            self._raise_if_exited()
            if self._judge(probe()):
                break
            time.sleep(self.interval_s)
        self._healthy()

    async def wait_async(self) -> None:
        async with httpx.AsyncClient(timeout=2.0, headers=self.headers) as client:
            probe = self.check if callable(self.check) else lambda: _http_health_async(client, self.check)
            self._started, self._stuck_since = time.monotonic(), None
            while True:
                self._raise_if_exited()
                answer = probe()
                if self._judge(await answer if inspect.isawaitable(answer) else answer):
                    break
                await asyncio.sleep(self.interval_s)
        self._healthy()

    def _raise_if_exited(self) -> None:
        if self.process is not None and not self.process.running():
            raise self._error("exited", "waiting", code=self.process.returncode)

    def _judge(self, answer: Health | bool) -> bool:
        """True once healthy; raises when it will not be in time."""
        health = answer if isinstance(answer, Health) else Health(bool(answer))
        if health.ok:
            return True
        now = time.monotonic()
        if health.code is not None and health.code in self.give_up_codes:
            self._stuck_since = now if self._stuck_since is None else self._stuck_since
            if now - self._stuck_since >= self.give_up_after_s:
                raise self._error("gave_up", health.detail)
        else:
            self._stuck_since = None
        if self.on_wait:
            self.on_wait(now - self._started, health.detail)
        if now - self._started > self.timeout_s:
            raise self._error("timed_out", health.detail)
        return False

    def _healthy(self) -> None:
        if self.process is not None:
            self.process.remember_family()

    def _error(self, which: str, detail: str, code: int | None = None) -> LatheError:
        errors = self.errors or StartErrors()
        subject = errors.subject or (self.check if isinstance(self.check, str) else self.process.name)
        message = getattr(errors, which).format(subject=subject, code=code, timeout_s=self.timeout_s, detail=detail)
        if self.process is None:
            return errors.kind(message)
        tail = self.process.log_tail()
        return errors.kind(message, hint=f"see {self.process.log_file}" + (f"; it ends: {tail}" if tail else ""))


def _http_health(url: str, headers: dict[str, str] | None) -> Health:
    try:
        return _health_of(httpx.get(url, timeout=2.0, headers=headers))
    except httpx.HTTPError:
        return Health(False, "not answering yet")


async def _http_health_async(client: httpx.AsyncClient, url: str) -> Health:
    try:
        return _health_of(await client.get(url))
    except httpx.HTTPError:
        return Health(False, "not answering yet")


def _health_of(response: httpx.Response) -> Health:
    if response.status_code == 200:
        return Health(True, "healthy")
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    detail = str(body["detail"]) if body.get("detail") else f"HTTP {response.status_code}"
    code = body.get("code")
    return Health(False, detail, code if isinstance(code, str) else None)
