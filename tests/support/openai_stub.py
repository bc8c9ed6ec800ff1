"""A light OpenAI-compatible backend for gateway tests and the overhead benchmark.

    python -m tests.support.openai_stub --port 18901 --name a --tokens 16

It answers at once with ``--tokens`` tokens ("tok0 tok1 …"), streaming or not, reports
usage like vLLM, and names itself in ``system_fingerprint`` so tests can see which
backend answered. A prompt containing ``DIE_MID_STREAM`` makes it exit after three
chunks: a backend dying in the middle of a stream.

For rollouts: ``--version`` is reported by ``/health`` as a Lathe inference service
does; ``--error-rate`` answers that share of requests with a 500; ``--answer`` puts a
word in front of every answer; ``--judge`` makes it a grader that answers 9 to an answer
holding ``GOOD`` and 2 to any other (a stand-in for an LLM judge, which a CPU cannot
run fast enough for a test).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


def build_app(
    name: str,
    tokens: int,
    delay_s: float,
    version: str | None = None,
    error_rate: float = 0.0,
    answer: str = "",
    judge: bool = False,
) -> Starlette:
    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok", "name": name, **({"version": version} if version else {})})

    async def chat(request: Request) -> Response:
        body = await request.json()
        if error_rate and random.random() < error_rate:
            return JSONResponse({"error": {"message": "stub failure", "type": "server_error"}}, status_code=500)
        if judge:
            asked = json.dumps(body.get("messages", ""))
            grade = "9" if "GOOD" in asked else "2"
            message = {"role": "assistant", "content": grade}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            usage = {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}
            return JSONResponse({"id": "judge", "object": "chat.completion", "choices": [choice], "usage": usage})
        return await _answer(body, json.dumps(body.get("messages", "")), "chat.completion")

    async def completions(request: Request) -> Response:
        body = await request.json()
        return await _answer(body, str(body.get("prompt", "")), "text_completion")

    async def embeddings(request: Request) -> Response:
        body = await request.json()
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i in range(len(inputs))]
        usage = {"prompt_tokens": 4 * len(inputs), "total_tokens": 4 * len(inputs)}
        return JSONResponse({"object": "list", "data": data, "model": body["model"], "usage": usage})

    async def models(_: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "stub", "object": "model", "owned_by": name}]})

    async def _answer(body: dict, prompt: str, kind: str) -> Response:
        n = min(tokens, int(body.get("max_tokens") or tokens))
        usage = {"prompt_tokens": 10, "completion_tokens": n, "total_tokens": 10 + n}
        created = int(time.time())
        if delay_s:
            await asyncio.sleep(delay_s)
        if not body.get("stream"):
            text = " ".join([answer] * bool(answer) + [f"tok{i}" for i in range(n)])
            choice = (
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
                if kind == "chat.completion"
                else {"index": 0, "text": text, "finish_reason": "length"}
            )
            return JSONResponse(
                {
                    "id": "stub-1",
                    "object": kind,
                    "created": created,
                    "model": body["model"],
                    "system_fingerprint": name,
                    "choices": [choice],
                    "usage": usage,
                }
            )
        dies = "DIE_MID_STREAM" in prompt

        async def events():
            for i in range(n):
                if dies and i == 3:
                    os._exit(1)
                delta = {"index": 0, "delta": {"content": f"tok{i} "}, "finish_reason": None}
                if kind != "chat.completion":
                    delta = {"index": 0, "text": f"tok{i} ", "finish_reason": None}
                chunk = {
                    "id": "stub-1",
                    "object": kind + ".chunk",
                    "created": created,
                    "model": body["model"],
                    "system_fingerprint": name,
                    "choices": [delta],
                }
                yield f"data: {json.dumps(chunk)}\n\n"
                if dies:
                    await asyncio.sleep(0.05)
            if (body.get("stream_options") or {}).get("include_usage"):
                final = {"id": "stub-1", "object": kind + ".chunk", "created": created, "model": body["model"]}
                yield f"data: {json.dumps({**final, 'choices': [], 'usage': usage})}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def traces(request):
        # OTLP/HTTP's trace export, read and dropped: a stand-in collector for benchmarks/gateway_overhead.py.
        await request.body()
        return Response(status_code=200, media_type="application/x-protobuf")

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/models", models),
            Route("/v1/traces", traces, methods=["POST"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="stub")
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--version", default=None)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--answer", default="")
    parser.add_argument("--judge", action="store_true")
    args = parser.parse_args()
    app = build_app(
        args.name, args.tokens, args.delay_ms / 1000, args.version, args.error_rate, args.answer, args.judge
    )
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, backlog=4096)


if __name__ == "__main__":
    main()
