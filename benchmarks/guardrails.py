"""What the gateway's guardrails cost per KB of prompt, side by side in one run.

    make bench-guardrails

For prompts of 0.1 to 64 KB of English prose from the Python documentation, with an e-mail
address and a card number planted in it, the time of:

- parsing the request body as JSON: the baseline, what every request already costs the
  gateway before any guardrail runs;
- the ``pii`` guardrail (``lathe.pii``: nine patterns, Luhn and mod-97 checks), masking;
- the ``injection`` guardrail (services/gateway/guardrails.py's patterns);
- both, as a request with ``pii:mask`` and ``injection`` gets them.

It prints, per size, the microseconds each takes (median of repeated calls on one core), the
guardrails' added cost per KB, and that cost over the JSON parse's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prompt_tokens import median_us, prose

SIZES_KB = (0.1, 1, 4, 16, 64)
PLANTED = " Mail ada.lovelace@example.org or pay with 5105 1051 0510 5100. "


def measure(size: float, pii, injection, repeat: int) -> dict:
    text = PLANTED + prose(size)
    raw = json.dumps({"model": "m", "messages": [{"role": "user", "content": text}]})
    both = lambda: (pii.check(text), injection.check(text))  # noqa: E731
    return {
        "kb": size,
        "json_us": median_us(lambda: json.loads(raw), repeat),
        "pii_us": median_us(lambda: pii.check(text), repeat),
        "injection_us": median_us(lambda: injection.check(text), repeat),
        "both_us": median_us(both, repeat),
        "masked": pii.check(text).kinds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from services.gateway.guardrails import InjectionGuardrail, PiiGuardrail

    rows = [measure(size, PiiGuardrail(), InjectionGuardrail(), args.repeat) for size in SIZES_KB]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'prompt':>8} {'JSON parse µs':>13} {'pii µs':>8} {'injection µs':>12} {'both µs':>8} "
          f"{'both µs/KB':>10} {'both/JSON':>9}")  # fmt: skip
    for r in rows:
        print(f"{r['kb']:>6} KB {r['json_us']:>13.1f} {r['pii_us']:>8.1f} {r['injection_us']:>12.1f} "
              f"{r['both_us']:>8.1f} {r['both_us'] / r['kb']:>10.1f} {r['both_us'] / r['json_us']:>8.1f}×")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
