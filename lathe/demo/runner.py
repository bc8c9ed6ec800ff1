"""Runs the demo's stages as commands and keeps their results for the summary."""

from __future__ import annotations

import json
import re
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from rich.console import Console

from lathe.commands import run_logged
from lathe.demo.stage_lines import StageLines, shown_path
from lathe.errors import PlatformError
from lathe.jobs import parse_progress
from lathe.settings import LatheSettings

MODEL = "smollm2-135m-instruct"
CHAT_QUESTION = "What does json.dumps() do?"
RAG_QUESTION = "What does sys.setswitchinterval do?"
AGENT_QUESTION = "What is 17 * 23?"
# The training part of the loop: the pipeline a cluster runs with `lathe pipeline run --k8s`.
PIPELINE = Path("pipelines/demo.yaml")


@dataclass(frozen=True)
class DemoSize:
    """How much each stage does. ``full`` fits 12 minutes on 2 cores; ``ci`` proves the loop."""

    name: str
    pretrain_steps: int
    sft_steps: int
    dpo_steps: int
    eval_questions: int
    eval_documents: int
    knowledge_questions: int  # of the no-forgetting suite's 40
    safety_items: int  # of the safety suite's 30, every category kept
    judge_prompts: int
    rag_pages: int
    max_examples: int | None  # SFT/DPO examples built; None: all
    sft_seq_len: int | None = None  # SFT sequence length; None: the recipe's


SIZES = {
    "full": DemoSize(
        "full",
        pretrain_steps=60,
        sft_steps=8,
        dpo_steps=4,
        eval_questions=24,
        eval_documents=1,
        knowledge_questions=40,
        safety_items=30,
        judge_prompts=12,
        rag_pages=12,
        max_examples=None,
    ),
    "ci": DemoSize(
        "ci",
        pretrain_steps=20,
        sft_steps=3,
        dpo_steps=2,
        eval_questions=8,
        eval_documents=1,
        knowledge_questions=40,  # all: the 95 % rule needs the room of two answers (one of 20 is too little)
        safety_items=10,
        judge_prompts=4,
        rag_pages=4,
        max_examples=200,
        sft_seq_len=128,  # proves the loop at half the recipe's tokens per step
    ),
}


class StageFailed(PlatformError):
    """A stage failed; the last lines of its log are printed under its line."""


@dataclass
class DemoRow:
    """One stage's outcome: a row of the summary table and an entry of summary.json."""

    name: str
    command: str
    status: str = "ok"  # ok | failed | kept (the gate kept the champion) | skipped
    seconds: float = 0.0
    figure: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    run_url: str | None = None
    log: str | None = None  # everything the stage's commands printed besides their results


@dataclass
class Stage:
    name: str
    what: str
    run: Callable[[DemoLoop], DemoRow]


class DemoLoop:
    """Runs the stages against the platform the settings describe, collecting results.

    Each stage shows one line on ``console``; what its commands print goes to its log under
    ``<home>/logs/demo/`` and, with ``verbose``, to ``echo`` (stderr) as well.
    """

    def __init__(
        self,
        settings: LatheSettings,
        size: DemoSize,
        console: Console,
        *,
        verbose: bool = False,
        echo: IO[str] | None = None,
    ) -> None:
        self.s = settings
        self.size = size
        self.data_dir = settings.home / "data" / "demo"
        self.train_dir = settings.home / "train" / "demo"
        self.log_dir = settings.log_dir / "demo"
        self.echo = (echo or sys.stderr) if verbose else None
        live = console.is_terminal and not console.is_dumb_terminal and not verbose
        self.lines = StageLines(console, live=live)
        self.results: list[DemoRow] = []
        self.facts: dict[str, Any] = {}  # what later stages need: versions, paths
        # The demo's run of pipelines/demo.yaml: each training stage records its outputs there.
        self.run_id = f"{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-demo"
        self._log: Path | None = None  # the running stage's

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}.log"

    # -- running commands -------------------------------------------------------------
    def command(self, name: str, argv: list[str], *, ok_codes: tuple[int, ...] = (0,)) -> tuple[DemoRow, Any]:
        """Run one stage command; stdout is its JSON result, the rest of its output goes to the stage's log."""
        shown = " ".join(shlex.quote(a) for a in argv)
        full = [sys.executable, "-m", "lathe.cli", *argv[1:]] if argv[0] == "lathe" else [sys.executable, *argv[1:]]
        log = self._log or self.log_path(name)
        started = time.monotonic()
        output = run_logged(full, log, title=shown, echo=self.echo, on_line=self._progress_line)
        result = DemoRow(name, shown, seconds=time.monotonic() - started, log=str(log))
        if output.exit_code not in ok_codes:
            error = StageFailed(f"{name}: exited {output.exit_code} (its log: {shown_path(log)})")
            error.command = shown
            raise error
        result.data["exit_code"] = output.exit_code
        return result, output.payload

    def _progress_line(self, line: str) -> None:
        stats = parse_progress(line)
        if stats is not None:
            self.lines.steps(stats["step"], stats["total"])

    def pipeline(self, name: str, stage: str, *sets: str) -> tuple[DemoRow, dict]:
        """Run one stage of the demo pipeline (pipelines/demo.yaml) in the demo's pipeline run; its record."""
        argv = ["lathe", "pipeline", "run", str(PIPELINE), "--from", stage, "--to", stage, "--run-id", self.run_id]
        for pair in sets:
            argv += ["--set", pair]
        result, payload = self.command(name, [*argv, "--json"])
        record = (payload.get("stages") or {}).get(stage) or {}
        if record.get("status") != "done":
            raise StageFailed(f"{name}: the pipeline recorded no result for stage {stage}")
        stage_result = record.get("result") or {}
        result.run_url = self.run_url(stage_result.get("run_id"))
        result.data.update({k: stage_result.get(k) for k in ("run_id", "model_name", "model_version")})
        result.data.update(job_id=payload.get("job_id"), pipeline_run=self.run_id, outputs=record.get("outputs"))
        result.data["metrics"] = stage_result.get("metrics", {})
        return result, record

    # -- MLflow, for links and the loss curve -----------------------------------------
    def _mlflow(self, path: str, **params: str) -> dict:
        import httpx

        response = httpx.get(f"{self.s.mlflow.uri}/api/2.0/mlflow/{path}", params=params, timeout=10)
        response.raise_for_status()
        return response.json()

    def run_url(self, run_id: str | None) -> str | None:
        if not run_id:
            return None
        try:
            experiment = self._mlflow("runs/get", run_id=run_id)["run"]["info"]["experiment_id"]
        except Exception:  # a link is a convenience: the run id is still in the summary
            return None
        return f"{self.s.mlflow.uri}/#/experiments/{experiment}/runs/{run_id}"

    def loss_curve(self, run_id: str | None) -> list[float]:
        if not run_id:
            return []
        try:
            history = self._mlflow("metrics/get-history", run_id=run_id, metric_key="loss")["metrics"]
        except Exception:
            return []
        return [m["value"] for m in sorted(history, key=lambda m: m["step"])]

    # -- the loop ---------------------------------------------------------------------
    def run(self, stages: list[Stage]) -> bool:
        with self.lines:
            for number, stage in enumerate(stages, start=1):
                if not self._run_stage(stage, number, len(stages)):
                    return False
        return True

    def _run_stage(self, stage: Stage, number: int, total: int) -> bool:
        self._log = self.log_path(stage.name)
        self._log.parent.mkdir(parents=True, exist_ok=True)
        self._log.write_bytes(b"")  # one log per stage, overwritten by each run
        self.lines.start(number, total, stage.name, stage.what)
        started = time.monotonic()
        try:
            result = stage.run(self)
        except StageFailed as exc:
            result = DemoRow(stage.name, getattr(exc, "command", ""), "failed", figure=exc.one_line())
        except BaseException as exc:  # a bug or ^C: show where the output went, then let it through
            self.lines.end("failed", time.monotonic() - started, f"{type(exc).__name__}: {exc}")
            self.lines.failure(self._log)
            raise
        finally:
            log, self._log = self._log, None
        result.seconds = time.monotonic() - started
        result.log = str(log)
        self.results.append(result)
        self.lines.end(result.status, result.seconds, result.figure)
        if result.status == "failed":
            self.lines.failure(log)
            return False
        return True

    def summary(self, total_seconds: float, install_seconds: float | None) -> dict[str, Any]:
        return {
            "size": asdict(self.size),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "ok": all(r.status != "failed" for r in self.results),
            "total_seconds": round(total_seconds, 1),
            "install_seconds": install_seconds,
            "stages": [{**asdict(r), "seconds": round(r.seconds, 1)} for r in self.results],
            "urls": urls(self.s),
        }


def urls(s: LatheSettings) -> dict[str, str]:
    return {
        "gateway (OpenAI API)": f"{s.gateway.base_url}/v1",
        "MLflow": s.mlflow.uri,
        "Ray dashboard": s.ray.jobs_address,
        "Prometheus": f"http://127.0.0.1:{s.prometheus.port}",
        "inference health": f"{s.inference.base_url}/health",
    }


def sparkline(values: list[float], width: int = 16) -> str:
    if len(values) < 2:
        return ""
    step = max(1, len(values) // width)
    points = values[::step][:width]
    low, high = min(points), max(points)
    bars = "▁▂▃▄▅▆▇█"
    return "".join(bars[int((v - low) / (high - low or 1) * (len(bars) - 1))] for v in points)


def write_summary(summary: dict[str, Any], home: Path) -> Path:
    out = home / "demo" / "summary.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return out
