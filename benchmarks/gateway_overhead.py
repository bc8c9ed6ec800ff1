"""Gateway overhead: client → backend directly, through Lathe's gateway (plain; with quotas and
money budgets; with tracing), through LiteLLM.

    make bench-gateway          # builds .venv-bench-litellm with litellm[proxy] once

One fast OpenAI stub backend (fixed tokens) serves all three paths. For each path the
load generator (its own process) sends non-streaming chat completions at fixed rates
(open loop: requests start on schedule whether or not earlier ones finished) and
records latency; then a closed loop of 32 concurrent clients finds the highest
sustained rate. It prints added p50/p99 latency over the direct path, max RPS, and the
ratios, and writes them to ``.lathe/bench/gateway.json``. LiteLLM runs with its own
defaults for a single-process proxy (no database, no Redis), as a team would start it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.integration.gateway_support import wait_http  # noqa: E402

BODY = {"model": "stub-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


# -- load generation (a child process, aiohttp: httpx's pool is quadratic in connections) --
async def _open_loop(url: str, key: str, rps: float, seconds: float) -> dict:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=2000)
    headers = {"Authorization": f"Bearer {key}"}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as session:

        async def one() -> None:
            nonlocal errors
            started = time.perf_counter()
            try:
                async with session.post(url, json=BODY) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
                        return
            except (aiohttp.ClientError, TimeoutError):
                errors += 1
                return
            latencies.append(time.perf_counter() - started)

        tasks = []
        start = time.perf_counter()
        n = int(rps * seconds)
        for i in range(n):
            delay = start + i / rps - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return _summary(latencies, errors, n / elapsed if elapsed else 0.0)


async def _closed_loop(url: str, key: str, concurrency: int, seconds: float) -> dict:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    async with session.post(url, json=BODY) as response:
                        await response.read()
                        ok = response.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return _summary(latencies, errors, len(latencies) / elapsed)


def _summary(latencies: list[float], errors: int, rate: float) -> dict:
    if not latencies:
        return {"p50_ms": None, "p99_ms": None, "rps": rate, "errors": errors, "n": 0}
    ordered = sorted(latencies)
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "rps": rate,
        "errors": errors,
        "n": len(ordered),
    }


def _load_main(argv: list[str]) -> None:
    mode, url, key, rate, seconds = argv
    coro = (
        _open_loop(url, key, float(rate), float(seconds))
        if mode == "open"
        else _closed_loop(url, key, int(rate), float(seconds))
    )
    print(json.dumps(asyncio.run(coro)))


def run_load(mode: str, url: str, key: str, rate: float, seconds: float) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--load", mode, url, key, str(rate), str(seconds)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the three paths ----------------------------------------------------------------------
def start(argv: list[str], log: Path, env: dict | None = None, cwd: Path = REPO) -> subprocess.Popen:
    handle = open(log, "ab")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(argv, cwd=cwd, env={**os.environ, **(env or {})}, stdout=handle, stderr=subprocess.STDOUT)


_ADMIN: dict[str, str] = {}  # gateway URL -> its admin key


def lathe_gateway(procs: list, work: Path, name: str, port: int, routes: Path, env: dict) -> tuple[str, str]:
    """A Lathe gateway in front of the stub: its chat URL and a key."""
    admin = "lk-admin-" + secrets.token_urlsafe(24)
    gateway = f"http://127.0.0.1:{port}"
    settings = {
        "LATHE_HOME": str(work / name), "LATHE_GATEWAY_PORT": str(port), "LATHE_GATEWAY_METRICS_PORT": str(port + 7),
        "LATHE_GATEWAY_ROUTES_FILE": str(routes), "LATHE_GATEWAY_ADMIN_KEY": admin, "LATHE_LOG_LEVEL": "WARNING",
    }  # fmt: skip
    procs.append(start([sys.executable, "-m", "services.gateway"], work / f"{name}.log", {**settings, **env}))
    wait_http(gateway + "/health")
    _ADMIN[gateway] = admin
    created = httpx.post(gateway + "/admin/keys", json={"name": "bench"}, headers={"Authorization": f"Bearer {admin}"})
    return gateway + "/v1/chat/completions", created.json()["key"]


def _spending_key(lathe: tuple[str, str]) -> str:
    base = lathe[0].removesuffix("/v1/chat/completions")
    admin = {"Authorization": f"Bearer {_ADMIN[base]}"}
    budget = [{"usd": 1e6, "period": "day"}]
    httpx.post(base + "/admin/teams", json={"name": "bench", "budgets": budget}, headers=admin).raise_for_status()
    body = {"name": "bench-spend", "team": "bench", "tpm": 10**9, "rpm": 10**9, "spend_budgets": budget}
    created = httpx.post(base + "/admin/keys", json=body, headers=admin)
    created.raise_for_status()
    return created.json()["key"]


def _litellm(procs: list, work: Path, python: Path, stub: str, port: int) -> tuple[str, str]:
    """LiteLLM's proxy with its own single-process defaults in front of the stub: its chat URL and key."""
    config = work / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: stub-model\n"
        "    litellm_params:\n"
        "      model: openai/stub-model\n"
        f"      api_base: {stub}/v1\n"
        "      api_key: none\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
    )
    master = "sk-bench-" + secrets.token_urlsafe(24)  # LiteLLM refuses to start without one
    procs.append(
        start(
            [str(python.with_name("litellm")), "--config", str(config), "--port", str(port), "--num_workers", "1"],
            work / "litellm.log",
            {"LITELLM_LOG": "ERROR", "DISABLE_ADMIN_UI": "True", "LITELLM_MASTER_KEY": master},
            cwd=work,
        )
    )
    wait_http(f"http://127.0.0.1:{port}/health/liveliness", timeout=180)
    return f"http://127.0.0.1:{port}/v1/chat/completions", master


def main() -> None:
    parser = argparse.ArgumentParser(description="Gateway overhead: direct vs Lathe vs LiteLLM")
    parser.add_argument("--rates", default="50,200,500", help="fixed request rates (per second)")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each fixed-rate run")
    parser.add_argument("--litellm-python", default=str(REPO / ".venv-bench-litellm" / "bin" / "python"))
    parser.add_argument("--no-tracing", dest="tracing", action="store_false", help="skip the gateway with tracing on")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]

    work = Path(tempfile.mkdtemp(prefix="lathe-bench-gw-"))
    procs: list[subprocess.Popen] = []
    try:
        stub_port, gateway_port, litellm_port = 28801, 28802, 28803
        stub = f"http://127.0.0.1:{stub_port}"
        procs.append(
            start(
                [sys.executable, "-m", "tests.support.openai_stub", "--port", str(stub_port), "--tokens", "8"],
                work / "stub.log",
            )
        )
        wait_http(stub + "/health")

        routes = work / "routes.json"
        price = {"prompt": 0.1, "completion": 0.3}
        routes.write_text(json.dumps({"models": {"stub-model": {"backends": [{"url": stub}], "price": price}}}))
        paths = {"direct": (stub + "/v1/chat/completions", "none")}
        paths["lathe"] = lathe_gateway(procs, work, "lathe", gateway_port, routes, {})
        # The same gateway, with a key that has token quotas and money budgets, its own and its team's.
        paths["lathe+quotas+spend"] = (paths["lathe"][0], _spending_key(paths["lathe"]))
        if args.tracing:
            # Tracing on, every span exported by OTLP/HTTP (to the stub, which reads and drops them).
            traced = {"LATHE_TRACING_ENABLED": "true", "LATHE_TRACING_OTLP_ENDPOINT": stub + "/v1/traces"}
            paths["lathe+tracing"] = lathe_gateway(procs, work, "lathe-traced", gateway_port + 10, routes, traced)
        if Path(args.litellm_python).exists():
            paths["litellm"] = _litellm(procs, work, Path(args.litellm_python), stub, litellm_port)
        else:
            print(f"LiteLLM not installed at {args.litellm_python}: `make bench-gateway` builds it; skipping it")

        results: dict[str, dict] = {name: {"fixed": {}} for name in paths}
        for name, (url, key) in paths.items():
            run_load("open", url, key, 20, 2)  # warm-up
            # The closed loop first: a fixed rate a path cannot hold leaves a backlog that
            # would spoil any measurement right after it.
            results[name]["max"] = run_load("closed", url, key, 32, args.seconds)
            for rate in rates:
                time.sleep(2)
                results[name]["fixed"][rate] = run_load("open", url, key, rate, args.seconds)
            print(f"measured {name}", flush=True)
        report(results, rates)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


def report(results: dict, rates: list[float]) -> None:
    direct = results["direct"]
    print(f"\ncores: {os.cpu_count()}; latency added over calling the backend directly (ms)")
    print("rate  | path               | achieved rps | errors | p50    | p99    | added p50 | added p99")
    rows = []
    for rate in rates:
        base = direct["fixed"][rate]
        for name, data in results.items():
            r = data["fixed"][rate]
            added50 = None if r["p50_ms"] is None or base["p50_ms"] is None else r["p50_ms"] - base["p50_ms"]
            added99 = None if r["p99_ms"] is None or base["p99_ms"] is None else r["p99_ms"] - base["p99_ms"]
            rows.append({"rate": rate, "path": name, **r, "added_p50_ms": added50, "added_p99_ms": added99})
            print(
                f"{rate:5.0f} | {name:18} | {r['rps']:12.1f} | {r['errors']:6d} | {_ms(r['p50_ms'])} | "
                f"{_ms(r['p99_ms'])} | {_ms(added50):>9} | {_ms(added99):>9}"
            )
    print("\nmax sustained rps (32 concurrent clients, one process each):")
    for name, data in results.items():
        print(f"  {name:18} {data['max']['rps']:8.1f} rps  p50 {_ms(data['max']['p50_ms'])} ms")
    ratios = {}
    if "lathe+tracing" in results:
        top = rates[-1]
        on, off = results["lathe+tracing"]["fixed"][top]["p50_ms"], results["lathe"]["fixed"][top]["p50_ms"]
        if on is not None and off is not None:
            ratios["tracing_added_p50_ms"] = on - off
            print(f"\ntracing on (OTLP export) adds {on - off:.2f} ms at p50 at {top:.0f} rps")
        ratios["tracing_max_rps_ratio"] = results["lathe+tracing"]["max"]["rps"] / max(
            results["lathe"]["max"]["rps"], 1e-9
        )
        print(f"max rps with tracing on / off: {ratios['tracing_max_rps_ratio']:.2f}x")
    if "litellm" in results:
        ratios["lathe_vs_litellm_max_rps"] = results["lathe"]["max"]["rps"] / max(
            results["litellm"]["max"]["rps"], 1e-9
        )
        print(f"\nratio Lathe / LiteLLM max rps: {ratios['lathe_vs_litellm_max_rps']:.2f}x")
    out = REPO / ".lathe" / "bench" / "gateway.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    maxes = {k: v["max"] for k, v in results.items()}
    out.write_text(json.dumps({"fixed": rows, "max": maxes, "ratios": ratios}, indent=2, default=str))
    print(f"written to {out.relative_to(REPO)}")


def _ms(value: float | None) -> str:
    return "   -  " if value is None else f"{value:6.2f}"


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        _load_main(sys.argv[2:])
    else:
        main()
