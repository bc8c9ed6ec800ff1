"""The demo's release: the candidate that passed the gate rolls out at the gateway under live traffic.

``lathe models rollout --wait`` starts the candidate inference service beside the
champion and asks the gateway for a rollout; while it runs, a few clients chat through
the gateway (streamed and not), so every step has requests on both versions to judge.
The gateway promotes the candidate (moving ``@champion``) or rolls it back on its own.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import httpx

from lathe.demo.runner import MODEL, DemoLoop, DemoRow
from lathe.platform.local import LocalPlatform

# Small steps on a laptop: each needs a few requests on the candidate and a few seconds.
STEPS = "25,50"
STEP_SECONDS = "4"
STEP_REQUESTS = "4"


class Traffic:
    """Clients chatting through the gateway until stopped; answers counted per version."""

    def __init__(self, url: str, key: str, workers: int = 2) -> None:
        self.url, self.key = url, key
        self.versions: Counter[str] = Counter()
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(workers)]

    def _run(self, worker: int) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        with httpx.Client(headers=headers, timeout=120) as client:
            sent = 0
            while not self.stop.is_set():
                sent += 1
                body = {
                    "model": MODEL,
                    "messages": [{"role": "user", "content": f"Name a Python module ({worker}.{sent})."}],
                    "max_tokens": 12,
                    "stream": sent % 2 == 0,  # streamed answers give the inter-token latency
                }
                try:
                    with client.stream("POST", self.url + "/v1/chat/completions", json=body) as response:
                        response.read()
                except httpx.HTTPError as exc:
                    self.failures.append(type(exc).__name__)
                    continue
                if response.status_code != 200:
                    self.failures.append(f"HTTP {response.status_code}")
                else:
                    self.versions[response.headers.get("x-lathe-backend-version") or "?"] += 1

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=150)


def start_candidate(loop: DemoLoop, stage: str, version: str) -> None:
    """The platform's candidate service for ``version`` (kept if it serves it already); its
    progress lines go to the stage's log."""
    log = loop.log_path(stage)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        LocalPlatform(loop.s).start_candidate(version, progress=lambda msg: print(msg, file=out, flush=True))


def rollout(loop: DemoLoop) -> DemoRow:
    version = loop.facts.get("gated")
    if not version:
        LocalPlatform(loop.s).stop_candidate()  # it served the candidate's evaluation
        row = DemoRow("rollout", "lathe models rollout", status="skipped")
        row.figure = "nothing to roll out: the gate kept the champion"
        return row
    platform = LocalPlatform(loop.s)
    argv = ["lathe", "models", "rollout", MODEL, "--version", str(version), "--steps", STEPS,
            "--step-seconds", STEP_SECONDS, "--step-requests", STEP_REQUESTS, "--max-ttft-ratio", "4",
            "--max-itl-ratio", "4", "--reason", "passed the evaluation gate", "--wait", "--timeout", "600",
            "--json"]  # fmt: skip
    # The candidate service serves the version already (its evaluation ran on it); otherwise it
    # starts before the clients do: on two cores a vLLM starting beside a busy one is slow to warm up.
    start_candidate(loop, "rollout", str(version))
    key = platform.cli_key_path.read_text().strip()
    with Traffic(loop.s.gateway.base_url, key) as traffic:
        result, done = loop.command("rollout", argv, ok_codes=(0, 1))
    promoted = done.get("state") == "promoted"
    result.status = "ok" if promoted else "kept"
    result.data.update(rollout=done.get("id"), state=done.get("state"), reason=done.get("reason"),
                       answers=dict(traffic.versions), failures=traffic.failures[:10])  # fmt: skip
    result.figure = _figure(done, traffic)
    if promoted:
        loop.facts["promoted"] = str(version)  # the hot swap stage waits for the champion service
    else:
        platform.stop_candidate()
    return result


def _figure(done: dict[str, Any], traffic: Traffic) -> str:
    steps = " → ".join(f"{s['weight']:g}%" for s in done.get("steps", []))
    answers = ", ".join(f"v{v} {n}" for v, n in sorted(traffic.versions.items()))
    last = next((e for e in reversed(done.get("history", [])) if "candidate" in e), None)
    latency = ""
    if last is not None:
        champion, candidate = last["champion"]["ttft_p95_s"], last["candidate"]["ttft_p95_s"]
        if champion is not None and candidate is not None:
            latency = f"; TTFT p95 v{done['champion']} {champion:.2f} s, v{done['version']} {candidate:.2f} s"
    verdict = "promoted to @champion" if done.get("state") == "promoted" else f"rolled back: {done.get('reason')}"
    failed = f", {len(traffic.failures)} failed" if traffic.failures else ", 0 failed"
    return f"v{done.get('version')} {steps} → {verdict} ({answers}{failed}{latency})"
