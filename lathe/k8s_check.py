"""``python -m lathe.k8s_check``: the check `helm test` runs against an installed release.

It asks the gateway for ``/ready``, lists the models (``/v1/models``) and makes one chat
completion with the first model, using the key in ``LATHE_API_KEY``. The gateway's address
is ``--url`` or ``LATHE_GATEWAY_URL``. Exit status 0 when all three answer, 1 otherwise,
with one line per step on stdout.
"""

from __future__ import annotations

import argparse
import os
import sys

import httpx


def check(base_url: str, api_key: str, *, timeout_s: float = 60.0) -> list[str]:
    """Run the three steps; returns one line per step and raises ``RuntimeError`` on the first failure."""
    headers = {"Authorization": f"Bearer {api_key}"}
    lines: list[str] = []
    with httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s) as client:
        ready = client.get("/ready")
        if ready.status_code != 200:
            raise RuntimeError(f"/ready answered {ready.status_code}: {ready.text[:200]}")
        lines.append("ready: ok")
        models = client.get("/v1/models")
        if models.status_code != 200:
            raise RuntimeError(f"/v1/models answered {models.status_code}: {models.text[:200]}")
        ids = [m["id"] for m in models.json().get("data", [])]
        if not ids:
            raise RuntimeError("/v1/models lists no model")
        lines.append(f"models: {', '.join(ids)}")
        body = {"model": ids[0], "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}
        chat = client.post("/v1/chat/completions", json=body)
        if chat.status_code != 200:
            raise RuntimeError(f"chat completion answered {chat.status_code}: {chat.text[:200]}")
        text = chat.json()["choices"][0]["message"]["content"]
        lines.append(f"chat ({ids[0]}): {text!r}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lathe.k8s_check", description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("LATHE_GATEWAY_URL"), help="Gateway base URL.")
    parser.add_argument("--timeout", type=float, default=60.0, help="Seconds per request.")
    args = parser.parse_args(argv)
    key = os.environ.get("LATHE_API_KEY", "")
    if not args.url or not key:
        print("k8s_check: set --url (or LATHE_GATEWAY_URL) and LATHE_API_KEY", file=sys.stderr)
        return 2
    try:
        for line in check(args.url, key, timeout_s=args.timeout):
            print(line)
    except (RuntimeError, httpx.HTTPError, KeyError, ValueError) as exc:
        print(f"k8s_check: FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
