"""What an exact prompt count costs the gateway, per KB of prompt, side by side in one run.

    make bench-prompt-tokens

Three ways to size a chat request's prompt for its quota reservation, on the bundled
SmolLM2-135M-Instruct's tokenizer and chat template, for prompts of 0.1 to 64 KB of English
prose from the Python documentation (one user message under a system prompt):

- the byte bound (what the gateway reserves when it cannot count: one token per UTF-8
  byte plus the template allowance): the baseline, nearly free and far too high;
- Lathe's count (``services/gateway/tokens.py``: the template rendered in jinja2's sandbox,
  encoded by the Rust ``tokenizers``);
- transformers' ``apply_chat_template(tokenize=True)``, the library way, for the same count.

It prints, per size, the microseconds each takes (median of repeated calls on one core),
Lathe's added cost per KB over the byte bound, how far the byte bound over-reserves, and
transformers' time over Lathe's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SMOLLM2 = REPO / ".lathe" / "assets" / "smollm2-135m-instruct"
DOCS = Path("/usr/share/doc/python3.11/html/_sources")
SIZES_KB = (0.1, 1, 4, 16, 64)


def prose(kilobytes: float) -> str:
    source = " ".join(p.read_text(errors="ignore") for p in sorted(DOCS.rglob("*.txt"))[:40]) if DOCS.is_dir() else ""
    source = source or "The quick brown fox jumps over the lazy dog. " * 2000
    while len(source) < kilobytes * 1024:
        source += " " + source
    return source[: int(kilobytes * 1024)]


def median_us(call, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def measure(size: float, lathe, reference, estimate_prompt_tokens, repeat: int) -> dict:
    """One prompt size: its exact count, the byte bound, and each way's median time."""
    messages = [{"role": "system", "content": "You answer questions about Python."},
                {"role": "user", "content": prose(size)}]  # fmt: skip
    texts, body = [m["content"] for m in messages], {"messages": messages}
    return {
        "kb": size, "tokens": lathe.chat(body), "byte_bound": estimate_prompt_tokens(texts, 48),
        "bytes_us": median_us(lambda: estimate_prompt_tokens(texts, 48), repeat),
        "lathe_us": median_us(lambda: lathe.chat(body), repeat),
        "transformers_us": median_us(
            lambda: reference.apply_chat_template(messages, add_generation_prompt=True, tokenize=True), repeat
        ),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from transformers import AutoTokenizer

    from services.gateway.admission import estimate_prompt_tokens
    from services.gateway.tokens import VersionTokenizer

    lathe, reference = VersionTokenizer.load(SMOLLM2), AutoTokenizer.from_pretrained(str(SMOLLM2))
    rows = [measure(size, lathe, reference, estimate_prompt_tokens, args.repeat) for size in SIZES_KB]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'prompt':>8} {'tokens':>7} {'byte bound':>10} {'bytes µs':>9} {'Lathe µs':>9} {'µs/KB':>7} "
          f"{'transformers µs':>15} {'transformers/Lathe':>18}")  # fmt: skip
    for r in rows:
        per_kb = (r["lathe_us"] - r["bytes_us"]) / r["kb"]
        ratio = r["transformers_us"] / r["lathe_us"]
        print(f"{r['kb']:>6} KB {r['tokens']:>7} {r['byte_bound']:>10} {r['bytes_us']:>9.1f} {r['lathe_us']:>9.1f} "
              f"{per_kb:>7.1f} {r['transformers_us']:>15.1f} {ratio:>17.2f}×")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
