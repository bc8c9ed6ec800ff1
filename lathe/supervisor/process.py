"""Start a child process, tell whether it runs, and stop it with what it started.

``spawn`` runs a command with its output appended to a log file; ``Supervised.stop``
(``stop_async`` in an event loop) sends SIGTERM to the process's group, waits, then
kills what is left. ``stop_pid`` does the same for a process another command started,
found by the pid in its state file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from lathe.errors import PlatformError

TAIL_LINES = 5
TAIL_BYTES = 8192


@dataclass
class Supervised:
    """A process ``spawn`` began, and the descendants seen once it was healthy."""

    name: str
    process: subprocess.Popen
    log_file: Path
    own_group: bool = True
    log_offset: int = 0  # where this run's output begins in the log, which runs append to
    family: list[psutil.Process] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        """None while it runs; its exit status after (negative: killed by that signal)."""
        return self.process.poll()

    def running(self) -> bool:
        return self.returncode is None

    def remember_family(self) -> None:
        # A leader killed outright leaves its children running (vLLM's engine cores, GBs each).
        self.family = _union(self.family, _descendants(self.pid))

    def log_tail(self, lines: int = TAIL_LINES) -> str:
        """The last non-blank lines this run wrote to its log, joined into one line."""
        try:
            with open(self.log_file, "rb") as log:
                size = log.seek(0, os.SEEK_END)
                log.seek(max(self.log_offset, size - TAIL_BYTES))
                text = log.read().decode(errors="replace")
        except OSError:
            return ""
        kept = [line.strip()[:200] for line in text.splitlines() if line.strip()]
        return " | ".join(kept[-lines:])

    def stop(self, timeout_s: float = 20.0) -> bool:
        """SIGTERM its group (or it alone), wait up to ``timeout_s``, SIGKILL what is left.

        When it has already exited, the descendants it was seen with are killed at once
        (they would run on, holding memory and ports). True if it was running.
        """
        others = _union(self.family, _descendants(self.pid))  # before reaping: the pid stays ours
        if not self.running():
            _kill_all(others)
            return False
        return _end(self.process, others, group=self.own_group, timeout_s=timeout_s)

    async def stop_async(self, timeout_s: float = 20.0) -> bool:
        return await asyncio.to_thread(self.stop, timeout_s)


def spawn(
    name: str,
    argv: list[str],
    *,
    log_file: Path,
    env: Mapping[str, str] | None = None,
    base_env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    own_group: bool = True,
) -> Supervised:
    """Run ``argv`` with ``env`` added to ``base_env`` (default: this process's), output appended to ``log_file``.

    ``own_group`` runs it in a session of its own, so ``stop`` reaches everything it
    started and nothing else; without it, it shares ours, and a signal to our group
    (Ctrl-C, ``lathe down``) reaches it too.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        log.write(f"\n=== {name} starting at {time.strftime('%Y-%m-%d %H:%M:%S')} ===\n".encode())
        log.flush()
        try:
            process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**(os.environ if base_env is None else base_env), **(env or {})},
                cwd=cwd,
                start_new_session=own_group,
            )
        except FileNotFoundError as exc:
            raise PlatformError(f"cannot start {name}: {exc.filename} not found", hint="run `make install`") from None
        return Supervised(name, process, log_file, own_group=own_group, log_offset=log.tell())


def stop_pid(pid: int, *, timeout_s: float = 20.0) -> bool:
    """SIGTERM the process group led by ``pid``, then SIGKILL what is left. True if it ran."""
    if not pid_alive(pid):
        return False
    try:
        leader = psutil.Process(pid)
    except psutil.Error:
        return False
    return _end(leader, _descendants(pid), group=True, timeout_s=timeout_s)


def pid_alive(pid: int) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _union(first: list[psutil.Process], second: list[psutil.Process]) -> list[psutil.Process]:
    return list(dict.fromkeys([*first, *second]))  # psutil.Process hashes by pid and start time


def _end(
    leader: subprocess.Popen | psutil.Process, others: list[psutil.Process], *, group: bool, timeout_s: float
) -> bool:
    """Ask ``leader`` (and its group) to stop; after ``timeout_s`` kill whatever is left."""
    deadline = time.monotonic() + timeout_s
    if not _signal(leader.pid, signal.SIGTERM, group=group):
        return False
    leader_gone = _wait(leader, timeout_s)
    _, alive = psutil.wait_procs(others, timeout=max(0.0, deadline - time.monotonic()))
    if not leader_gone:
        _signal(leader.pid, signal.SIGKILL, group=group)
        _wait(leader, 5.0)
    _kill_all(alive)
    return True


def _signal(pid: int, sig: int, *, group: bool) -> bool:
    """Send ``sig`` to the group ``pid`` leads (or to ``pid`` alone); False when nothing was there."""
    if group:
        try:
            os.killpg(pid, sig)
            return True
        except (ProcessLookupError, PermissionError):
            pass
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def _wait(proc: subprocess.Popen | psutil.Process, timeout_s: float) -> bool:
    try:
        proc.wait(timeout=timeout_s)
    except (subprocess.TimeoutExpired, psutil.TimeoutExpired):
        return False
    except psutil.NoSuchProcess:
        pass
    return True


def _kill_all(procs: list[psutil.Process]) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if proc.is_running():  # the same process, not a reused pid
                proc.kill()
    psutil.wait_procs(procs, timeout=5)
