"""The demo's stages, in order. Each runs the commands a user would type and reads their JSON."""

from __future__ import annotations

import json
import time

import httpx

from lathe.demo.monitoring import monitoring
from lathe.demo.release import rollout, start_candidate
from lathe.demo.runner import AGENT_QUESTION, CHAT_QUESTION, MODEL, DemoLoop, DemoRow, Stage, StageFailed, sparkline
from lathe.errors import LatheError
from lathe.platform.local import LocalPlatform


def _served_version(loop: DemoLoop) -> str | None:
    try:
        return httpx.get(f"{loop.s.inference.base_url}/health", timeout=5).json().get("version")
    except (httpx.HTTPError, ValueError):
        return None


def platform_up(loop: DemoLoop) -> DemoRow:
    result, status = loop.command("platform", ["lathe", "up", "--json"])
    components = [c for c in status["components"] if c["state"] != "unavailable"]
    healthy = [c["name"] for c in components if c["state"] == "healthy"]
    loop.facts["champion"] = _served_version(loop)
    result.data.update(healthy=healthy, serving=loop.facts["champion"])
    result.figure = f"{len(healthy)}/{len(components)} components healthy; serving {MODEL} v{loop.facts['champion']}"
    return result


def curate(loop: DemoLoop) -> DemoRow:
    raw = loop.data_dir / "raw-docs"
    build, _ = loop.command("corpus", ["python", "-m", "pipelines.curation.demo_corpus", "--out", str(raw)])
    result, record = loop.pipeline("curate", "curate", f"params.raw={raw / 'docs'}")
    summary = record.get("details") or {}
    result.command = f"{build.command} && {result.command}"
    pii = sum((summary.get("pii_redacted") or {}).values())
    result.data.update({k: summary.get(k) for k in ("documents_in", "documents_kept", "dropped_by_stage")})
    result.data.update(pii_redacted=pii)
    result.figure = f"{summary['documents_kept']}/{summary['documents_in']} documents kept, {pii} PII spans redacted"
    return result


def finetune_data(loop: DemoLoop) -> DemoRow:
    sets = [f"params.max_examples={loop.size.max_examples}"] if loop.size.max_examples else []
    result, record = loop.pipeline("finetune data", "sft-data", *sets)
    counts = (record.get("details") or {})["counts"]
    result.data.update(counts={k: counts[k] for k in ("sft", "dpo", "eval_questions", "heldout_pages")})
    result.figure = f"{counts['sft']} SFT / {counts['dpo']} DPO examples, {counts['eval_questions']} eval questions"
    return result


def tokenizer(loop: DemoLoop) -> DemoRow:
    result, record = loop.pipeline("tokenizer", "tokenizer")
    metrics = (record.get("result") or {}).get("metrics", {})
    result.figure = f"vocabulary {int(metrics.get('vocab_size', 0)):,}" if metrics.get("vocab_size") else "trained"
    return result


def _schedule(stage: str, steps: int) -> list[str]:
    """Overrides that keep a short run's warm-up and logging inside its steps.

    One checkpoint, at the end: a run of a few minutes gains nothing from a mid-run one
    and pays for writing it (the fault suite proves resuming from one).
    """
    return [
        f"{stage}.training.max_steps={steps}",
        f"{stage}.training.log_every={max(1, steps // 6)}",
        f"{stage}.checkpoint.every_steps={steps}",
        f"{stage}.optimizer.warmup_steps={max(1, steps // 8)}",
    ]


def pretrain(loop: DemoLoop) -> DemoRow:
    result, record = loop.pipeline("pretrain", "pretrain", *_schedule("pretrain", loop.size.pretrain_steps))
    payload = record.get("result") or {}
    metrics = payload.get("metrics", {})
    curve = loop.loss_curve(payload.get("run_id"))
    result.data["loss_curve"] = curve
    first = f"{curve[0]:.2f} → " if curve else ""
    result.figure = (
        f"loss {first}{metrics.get('loss', float('nan')):.2f} {sparkline(curve)} · "
        f"{metrics.get('tokens_per_s', 0):,.0f} tok/s · {payload.get('model_name')} "
        f"v{payload.get('model_version')}"
    )
    return result


def sft(loop: DemoLoop) -> DemoRow:
    seq = [f"sft.training.seq_len={loop.size.sft_seq_len}"] if loop.size.sft_seq_len else []
    result, record = loop.pipeline("sft", "sft", *_schedule("sft", loop.size.sft_steps), *seq)
    payload = record.get("result") or {}
    loss = payload.get("metrics", {}).get("loss", float("nan"))
    result.figure = f"loss {loss:.3f} · LoRA merged → {MODEL} v{payload['model_version']} @sft"
    return result


def dpo(loop: DemoLoop) -> DemoRow:
    result, record = loop.pipeline("dpo", "dpo", *_schedule("dpo", loop.size.dpo_steps))
    payload = record.get("result") or {}
    metrics = payload.get("metrics", {})
    result.figure = (
        f"loss {metrics.get('loss', float('nan')):.3f}, reward accuracy "
        f"{metrics.get('rewards_accuracy', float('nan')):.2f} → {MODEL} v{payload['model_version']} @dpo"
    )
    loop.facts["candidate"] = str(payload["model_version"])
    return result


def _evaluate(loop: DemoLoop, name: str, stage: str, *sets: str) -> tuple[DemoRow, dict]:
    result, record = loop.pipeline(
        name,
        stage,
        f"{stage}.perplexity.max_documents={loop.size.eval_documents}",
        f"{stage}.task.max_questions={loop.size.eval_questions}",
        f"{stage}.knowledge.max_questions={loop.size.knowledge_questions}",
        f"{stage}.safety.max_items={loop.size.safety_items}",
        f"{stage}.judge.max_prompts={loop.size.judge_prompts}",
        *sets,
    )
    metrics = (record.get("result") or {}).get("metrics", {})
    names = ("token_f1", "perplexity", "knowledge_accuracy", "safety_pass_rate", "judge_win_rate")
    result.data["scores"] = {name: metrics.get(name, metrics.get(f"eval_{name}")) for name in names}
    return result, metrics


def _scores(metrics: dict) -> str:
    shown = [("token F1", "token_f1"), ("perplexity", "perplexity"), ("knowledge", "knowledge_accuracy"),
             ("safety", "safety_pass_rate"), ("judge win rate", "judge_win_rate")]  # fmt: skip
    return ", ".join(f"{label} {_num(metrics, key)}" for label, key in shown if _num(metrics, key) != "-")


def evaluate_champion(loop: DemoLoop) -> DemoRow:
    result, metrics = _evaluate(loop, "champion eval", "champion-eval")
    result.figure = f"v{loop.facts['champion']}: {_scores(metrics)}"
    return result


def evaluate_candidate(loop: DemoLoop) -> DemoRow:
    """Scored on the platform's candidate service, started here for the version: the rollout
    that follows a passing gate finds it serving that version and starts no second vLLM."""
    version = loop.facts["candidate"]
    try:
        start_candidate(loop, "candidate eval", version)
    except LatheError as exc:
        raise StageFailed(f"candidate eval: the candidate service for v{version} did not start: "
                          f"{exc.one_line()}") from exc  # fmt: skip
    endpoint = f"{loop.s.inference.candidate_base_url}/v1"
    result, metrics = _evaluate(loop, "candidate eval", "candidate-eval", "candidate-eval.task.endpoint.serve=false",
                                f"candidate-eval.task.endpoint.base_url={endpoint}")  # fmt: skip
    result.data["endpoint"] = endpoint
    result.figure = f"v{version}: {_scores(metrics)}"
    return result


def _num(metrics: dict, key: str) -> str:
    value = metrics.get(key, metrics.get(f"eval_{key}"))
    return f"{value:.3f}" if isinstance(value, int | float) else "-"


def gate(loop: DemoLoop) -> DemoRow:
    version = loop.facts["candidate"]
    # The gate decides; the rollout stage moves the alias, under traffic, if the candidate holds up.
    result, record = loop.pipeline("gate", "gate", "gate.move=false")
    decision = record.get("details") or {}
    result.run_url = loop.run_url(decision.get("gate_run_id"))
    result.data.update(decision)
    passed = decision["decision"] == "canary"
    result.status = "ok" if passed else "kept"
    verdict = f"v{version} passed: it goes out as a rollout" if passed else f"kept v{decision.get('champion_version')}"
    result.figure = f"{verdict}: {decision['reason']}"
    if decision.get("report"):
        result.data["report"] = decision["report"]
        result.figure += f" (report: {decision['report']})"
    loop.facts["gated"] = version if passed else None
    return result


def hot_swap(loop: DemoLoop, timeout_s: float = 420) -> DemoRow:
    target = loop.facts.get("promoted")
    result = DemoRow("hot swap", f"curl {loop.s.inference.base_url}/health")
    if not target:
        result.status = "skipped"
        result.figure = f"still serving v{_served_version(loop)} (the champion stays)"
        return result
    deadline = time.monotonic() + timeout_s
    while (served := _served_version(loop)) != str(target):
        if time.monotonic() > deadline:
            raise StageFailed(f"hot swap: the inference service still serves v{served} after {timeout_s:.0f} s")
        time.sleep(2)
    # The champion service serves the promoted version now: the candidate service can go.
    LocalPlatform(loop.s).stop_candidate()
    result.data["serving"] = served
    result.figure = f"serving v{loop.facts['champion']} → v{served} with no restart of the gateway"
    return result


def chat(loop: DemoLoop) -> DemoRow:
    started = time.monotonic()
    result, answer = loop.command("chat", ["lathe", "chat", CHAT_QUESTION, "--max-tokens", "48", "--json"])
    seconds = time.monotonic() - started
    tokens = (answer.get("usage") or {}).get("completion_tokens") or 0
    result.data.update(
        answer=answer["answer"],
        version=answer.get("version"),
        completion_tokens=tokens,
        tokens_per_s=round(tokens / seconds, 1),
        ttft_s=answer.get("ttft_s"),
    )
    result.figure = f"v{answer.get('version')}: “{_clip(answer['answer'])}” · {tokens / seconds:.1f} tok/s"
    return result


def _clip(text: str, width: int = 70) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def rag_ingest(loop: DemoLoop) -> DemoRow:
    out = loop.data_dir / "rag"
    build, _ = loop.command(
        "rag corpus",
        ["python", "-m", "services.rag.demo_questions", "--out", str(out), "--pages", str(loop.size.rag_pages)],
    )
    result, ingest = loop.command(
        "rag ingest", ["lathe", "rag", "ingest", str(out / "docs"), "--collection", "demo", "--json"]
    )
    evaluation, report = loop.command(
        "rag eval",
        [
            "lathe",
            "rag",
            "eval",
            "--questions",
            str(out / "questions.jsonl"),
            "--collection",
            "demo",
            "--answers",
            "0",
            "--json",
        ],
    )
    result.command = " && ".join((build.command, result.command, evaluation.command))
    result.data.update(
        documents=len(ingest["documents"]),
        chunks=ingest["chunks_written"],
        hit_at_5=report["hit_at_k"],
        mrr=report["mrr"],
        questions=report["questions"],
    )
    result.figure = (
        f"{len(ingest['documents'])} pages, {ingest['chunks_written']} chunks · hit@5 "
        f"{report['hit_at_k']:.3f}, MRR {report['mrr']:.3f} on {report['questions']} questions"
    )
    lines = (out / "questions.jsonl").read_text().splitlines()
    loop.facts["rag_questions"] = [json.loads(line)["question"] for line in lines[:RAG_ATTEMPTS]]
    return result


# The 135M model sometimes answers beside its sources, and an unsupported answer gets no
# citation (by design): the stage asks the next generated question then, up to this many,
# and the figure says how many it asked.
RAG_ATTEMPTS = 3


def rag_answer(loop: DemoLoop) -> DemoRow:
    questions = loop.facts["rag_questions"]
    asked = 0
    for question in questions:
        asked += 1
        result, answer = loop.command("rag answer", ["lathe", "rag", "ask", question, "--collection", "demo", "--json"])
        citations = answer.get("citations") or []
        if citations:
            break
    result.data.update(
        question=question,
        answer=answer.get("answer"),
        citations=[{k: c.get(k) for k in ("index", "source", "section", "score")} for c in citations],
        questions_asked=asked,
    )
    sources = ", ".join(sorted({c["source"].rsplit("/", 1)[-1] for c in citations})) or "none"
    tries = f" (question {asked} of {len(questions)})" if asked > 1 else ""
    result.figure = (
        f"{question} → “{_clip(answer.get('answer', ''), 50)}” [{len(citations)} citations: {sources}]{tries}"
    )
    return result


def agent(loop: DemoLoop) -> DemoRow:
    result, run = loop.command(
        "agent", ["lathe", "agent", "ask", AGENT_QUESTION, "--tool-choice", "calculator", "--json"]
    )
    calls = [s for s in run.get("steps", []) if s["type"] == "tool_call"]
    outputs = [s for s in run.get("steps", []) if s["type"] == "tool_result"]
    if not calls:
        raise StageFailed(f"agent: the run ({run.get('status')}) called no tool")
    shown = (
        f"{calls[0]['tool']}({json.dumps(calls[0].get('arguments'))}) → {_clip(outputs[0]['content'], 20)}"
        if outputs
        else calls[0]["tool"]
    )
    result.data.update(
        run_id=run.get("id"), status=run.get("status"), tools=[c["tool"] for c in calls], answer=run.get("answer")
    )
    result.figure = f"{AGENT_QUESTION} {shown}; answer “{_clip(run.get('answer') or '', 30)}”"
    return result


STAGES = [
    Stage("platform", "lathe up: MLflow, Ray, vLLM inference, RAG, agent, gateway, Prometheus", platform_up),
    Stage("curate", "build the documentation corpus, curate it as a Ray job", curate),
    Stage("finetune data", "Q&A and preference pairs from the curated pages", finetune_data),
    Stage("tokenizer", "train a BPE tokenizer on the curated corpus", tokenizer),
    Stage("pretrain", "pre-train a tiny model with DDP on 2 Ray workers", pretrain),
    Stage("sft", "LoRA SFT of SmolLM2-135M on the Q&A", sft),
    Stage("dpo", "DPO (LoRA) on the preference pairs", dpo),
    Stage("champion eval", "score the served champion through the gateway", evaluate_champion),
    Stage("candidate eval", "score the DPO candidate on an inference service of its own", evaluate_candidate),
    Stage("gate", "does the candidate beat the champion?", gate),
    Stage("rollout", "the gateway shifts traffic to it step by step, then promotes or rolls back", rollout),
    Stage("hot swap", "the inference service moves to the new champion", hot_swap),
    Stage("chat", "a chat completion through the gateway", chat),
    Stage("rag ingest", "ingest documentation pages, measure retrieval", rag_ingest),
    Stage("rag answer", "a question answered with citations", rag_answer),
    Stage("agent", "an agent run that calls a tool", agent),
    Stage("monitoring", "Prometheus has scraped every component", monitoring),
]
