"""Run a Locust scenario headless against a running Lathe platform and report on it.

    python -m tests.load.run --scenario mix --users 4 --duration 60s             # what `make load` runs
    python -m tests.load.run --soak                                              # 10 minutes at a fixed rate
    python -m tests.load.run --scenario chat --users 8 --spawn-rate 2 --duration 2m --csv-dir /tmp/chat --json

The platform is the one ``lathe up`` started with the same settings (``LATHE_HOME``,
ports): the gateway's URL and PID come from ``lathe status --json``. Without
``--api-key`` (or ``LATHE_LOAD_API_KEY``) the run makes its own key with ``lathe keys
create``, and for the mix a second one limited to ``--limited-rpm`` requests a minute
whose 429s are expected; both are revoked at the end. The RAG scenarios first ingest
the small load collection (tests/load/corpus.py; unchanged documents cost nothing).

Writes Locust's CSVs (``locust_stats.csv``, ``locust_failures.csv``, …), one row per
request (``samples.csv``) and ``summary.json`` (``soak-report.json`` and
``soak-report.png`` with ``--soak``) into ``--csv-dir``, and prints a table: requests,
429s, other failures by kind, RPS and p50/p95/p99 per scenario, then the criteria.
Exit status: 0 when every criterion passes, 1 when one fails, 2 when the run could
not happen (no platform, Locust failed).

``--soak`` paces users at a constant throughput (``--rate``, default SOAK_RATE, far
below what this machine saturates at), samples the gateway's RSS every
``--rss-interval`` seconds, and adds two criteria: RSS growth from the end of the
warm-up (``--warmup``) to the end ≤ 10 %, and p99 of the last ``--window`` ≤ 1.5 × the
first's + 1 s (see ``report.Rules``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

import httpx

from tests.load import corpus, report

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
USER_CLASSES = {
    "mix": "MixUser",
    "chat": "ChatUser",
    "stream": "StreamUser",
    "embeddings": "EmbeddingsUser",
    "rag": "RagUser",
    "agent": "AgentUser",
}
# Measured on the 2-core development machine, shared with other work (load average 6-19):
# the mix back to back gives 0.7-0.8 req/s with 2-4 users and 1.9 req/s with 8 (chat p50
# 6 s), while at a fixed 0.5 req/s chat p50 stays at 2.5 s: a quarter of what it can do,
# and still 5-15 requests a minute per scenario for the p99 comparison. Twelve users
# each start a task every 24 s, longer than the slowest agent run takes.
SOAK_RATE = 0.5
SOAK_USERS = 12


def parse_duration(text: str) -> float:
    """Locust's run-time syntax: 90, 90s, 10m, 1h30m."""
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    if not parts or not any(parts.groups()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 10m or 1h30m")
    hours, minutes, seconds = (int(g or 0) for g in parts.groups())
    return float(hours * 3600 + minutes * 60 + seconds)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.load.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=sorted(USER_CLASSES), default="mix")
    parser.add_argument("--users", type=int, help=f"concurrent users (default 4; soak {SOAK_USERS})")
    parser.add_argument("--spawn-rate", type=float, help="users started per second (default: all in 1 s; soak: rate)")
    parser.add_argument("--duration", type=parse_duration, help="run time: 90s, 10m… (default 60s; soak 10m)")
    parser.add_argument("--rate", type=float, help=f"offered req/s in total, constant (soak default {SOAK_RATE})")
    parser.add_argument("--csv-dir", type=Path, help="where the CSVs and reports go (default .lathe/load/…)")
    parser.add_argument("--soak", action="store_true", help="steady rate, RSS sampling, soak criteria")
    parser.add_argument("--warmup", type=parse_duration, default=60.0, help="soak: RSS baseline after this")
    parser.add_argument("--window", type=parse_duration, default=60.0, help="soak: p99 window (first vs last)")
    parser.add_argument(
        "--min-window-samples", type=int, default=report.Rules.min_window_samples,
        help="soak: fewest successes of a scenario in a window for its p99 to be judged",
    )  # fmt: skip
    parser.add_argument("--rss-interval", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--host", help="gateway URL (default: from `lathe status --json`)")
    parser.add_argument("--api-key", default=os.environ.get("LATHE_LOAD_API_KEY"), help="gateway key")
    parser.add_argument("--limited-rpm", type=int, default=2, help="rpm of the mix's low-rpm key (0: none)")
    parser.add_argument("--max-tokens", type=int, default=24, help="max_tokens of chats, streams and RAG answers")
    parser.add_argument("--collection", default=corpus.COLLECTION, help="RAG collection to ingest and query")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of tables")
    return parser


# -- the platform ----------------------------------------------------------------------------
def lathe(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lathe.cli", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def abort(message: str) -> NoReturn:
    """The run cannot happen: say why on one line and exit 2 (1 is kept for a failed criterion)."""
    print(f"load: {message}", file=sys.stderr)
    raise SystemExit(2)


def local_gateway(required: bool) -> dict[str, Any]:
    """The local gateway's status entry (url, pid); {} when it is not up and ``--host`` names another."""
    result = lathe("status", "--json")
    try:
        status = json.loads(result.stdout)
        gateway = next(c for c in status["components"] if c["name"] == "gateway")
    except (ValueError, KeyError, StopIteration):
        gateway = {"state": "unknown", "detail": result.stderr.strip()[:300]}
    if gateway["state"] == "healthy":
        return gateway
    if required:
        abort(f"the gateway is {gateway['state']} ({gateway['detail']}): start the platform with `lathe up`")
    return {}


def create_key(name: str, *options: str) -> str:
    result = lathe("keys", "create", name, *options, "--json")
    if result.returncode != 0:
        abort(f"`lathe keys create {name}` failed: {result.stderr.strip()}")
    return json.loads(result.stdout)["key"]


def prepare_keys(args) -> tuple[dict[str, str], list[str], int | None]:
    """The keys the users call with (made here unless given), the names to revoke, the low rpm."""
    keys, made = {}, []
    if args.api_key:
        keys["main"] = args.api_key
    else:
        made.append(f"load-{secrets.token_hex(3)}")
        keys["main"] = create_key(made[-1])
    limited_rpm = args.limited_rpm if args.scenario == "mix" and args.limited_rpm > 0 else None
    if limited_rpm:
        made.append(f"load-limited-{secrets.token_hex(3)}")
        keys["limited"] = create_key(made[-1], "--rpm", str(limited_rpm))
    return keys, made, limited_rpm


class RssSampler(threading.Thread):
    """Samples one process's resident set size every ``interval`` seconds until stopped."""

    def __init__(self, pid: int | None, interval: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, int]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        import psutil

        if self.pid is None:
            return
        try:
            process = psutil.Process(self.pid)
            while True:
                self.samples.append((time.time(), process.memory_info().rss))
                if self._halt.wait(self.interval):
                    return
        except psutil.Error:
            return  # the gateway went away; the samples so far stand

    def stop(self) -> list[tuple[float, int]]:
        self._halt.set()
        self.join(timeout=10)
        return self.samples


# -- the run ---------------------------------------------------------------------------------
def run_locust(args, host: str, keys: dict[str, str], csv_dir: Path, user_rate: float) -> int:
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "--users", str(args.users), "--spawn-rate", str(args.spawn_rate), "--run-time", f"{int(args.duration)}s",
        "--host", host, "--csv", str(csv_dir / "locust"), "--only-summary", "--exit-code-on-error", "0",
        # Requests in flight at the end finish and count, rather than being cut off halfway.
        "--stop-timeout", "60s",
        "--loglevel", "WARNING", USER_CLASSES[args.scenario],
    ]  # fmt: skip
    env = {
        **os.environ,
        "LATHE_LOAD_API_KEY": keys["main"],
        "LATHE_LOAD_LIMITED_KEY": keys.get("limited", ""),
        "LATHE_LOAD_USER_RATE": str(user_rate),
        "LATHE_LOAD_MAX_TOKENS": str(args.max_tokens),
        "LATHE_LOAD_COLLECTION": args.collection,
        "LATHE_LOAD_SAMPLES": str(csv_dir / "samples.csv"),
    }  # keys travel in the environment, not on a command line others can read
    with open(csv_dir / "locust.log", "w") as log:
        return subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.soak:
        args.rate = args.rate or SOAK_RATE
        args.users = args.users or SOAK_USERS
        args.duration = args.duration or 600.0
        args.spawn_rate = args.spawn_rate or args.rate  # one user per 1/rate s: their paces interleave
    args.users = args.users or 4
    args.duration = args.duration or 60.0
    args.spawn_rate = args.spawn_rate or args.users
    mode = "soak" if args.soak else "load"
    csv_dir = args.csv_dir or Path(".lathe") / "load" / (mode if args.soak else args.scenario)
    csv_dir.mkdir(parents=True, exist_ok=True)
    user_rate = args.rate / args.users if args.rate else 0.0

    gateway = local_gateway(required=not args.host)
    host = (args.host or gateway["url"]).rstrip("/")
    keys, made, limited_rpm = prepare_keys(args)
    try:
        if args.scenario in ("mix", "rag"):
            try:
                corpus.ingest(host, keys["main"], args.collection)
            except (httpx.HTTPError, RuntimeError) as exc:
                abort(f"the load collection could not be ingested: {exc}")
        sampler = RssSampler(gateway.get("pid"), args.rss_interval)
        sampler.start()
        code = run_locust(args, host, keys, csv_dir, user_rate)
        rss_series = sampler.stop()
    finally:
        for name in made:
            lathe("keys", "revoke", name)
    samples_path = csv_dir / "samples.csv"
    if code != 0 or not samples_path.exists():
        abort(f"Locust failed (exit {code}); see {csv_dir / 'locust.log'}")
    result = build_report(args, mode, host, gateway, report.read_samples(samples_path), rss_series, limited_rpm)
    result["csv_dir"] = str(csv_dir)
    result["failures"] = report.failure_messages(csv_dir / "locust_failures.csv")
    name = "soak-report" if args.soak else "summary"
    if args.soak and report.plot(result, csv_dir / "soak-report.png"):
        result["plot"] = str(csv_dir / "soak-report.png")
    (csv_dir / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result, csv_dir / f"{name}.json")
    return 0 if result["passed"] else 1


def build_report(args, mode, host, gateway, samples, rss_series, limited_rpm) -> dict[str, Any]:
    rules = report.Rules(warmup_s=args.warmup, window_s=args.window, min_window_samples=args.min_window_samples)
    summary = report.summarise(samples)
    started = report.span(samples)[0] if samples else time.time()
    rss = report.rss_growth(rss_series, started, rules.warmup_s)
    window_stats = report.windows(samples, rules.window_s) if args.soak else None
    criteria = report.judge(
        samples,
        summary,
        rules,
        limited_rpm=limited_rpm,
        rss=rss if args.soak else None,
        window_stats=window_stats,
    )
    return {
        "mode": mode,
        "scenario": args.scenario,
        "host": host,
        "users": args.users,
        "spawn_rate": args.spawn_rate,
        "duration_s": args.duration,
        "target_rps": args.rate,
        "max_tokens": args.max_tokens,
        "limited_rpm": limited_rpm,
        "started_epoch": started,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "gateway_pid": gateway.get("pid"),
        "rules": rules.__dict__,
        **summary,
        "windows": window_stats or [],
        "rss": {**rss, "series": rss_series},
        "criteria": criteria,
        "passed": report.passed(criteria),
    }


def print_report(result: dict[str, Any], path: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    totals = result["totals"]
    pace = f"offered {result['target_rps']:g} req/s" if result["target_rps"] else "back to back"
    title = f"Lathe {result['mode']}: {result['scenario']}, {result['users']} users, {result['seconds']:.0f} s, {pace}"
    table = Table(title=title, title_justify="left")
    for column in ("scenario", "requests", "ok", "429", "errors (by kind)", "req/s", "p50 ms", "p95 ms", "p99 ms"):
        table.add_column(column, justify="left" if column in ("scenario", "errors (by kind)") else "right")

    def add(name: str, row: dict[str, Any], style: str = "") -> None:
        kinds = ", ".join(f"{k} {v}" for k, v in row["failures_by_kind"].items() if k != "rate_limited")
        expected = name == report.LOW_RPM_NAME and row["rate_limited"]
        limited = f"{row['rate_limited']}{' (expected)' if expected else ''}"
        cells = [
            name, str(row["requests"]), str(row["ok"]), limited, kinds or "0", f"{row['rps']:.2f}",
            *(_ms(row[f"p{q}_ms"]) for q in (50, 95, 99)),
        ]  # fmt: skip
        table.add_row(*cells, style=style)

    for name, row in result["scenarios"].items():
        add(name, row)
    add("total (requests)", totals, "bold")
    console.print(table)
    rss = result["rss"]
    if rss.get("baseline_mib") is not None:
        memory = f"{rss['first_mib']} MiB at start, {rss['baseline_mib']} after warm-up, {rss['last_mib']} at the end"
    elif rss.get("last_mib") is not None:
        memory = f"{rss['first_mib']} MiB at start, {rss['last_mib']} at the end (shorter than the warm-up)"
    else:
        memory = "not sampled"
    console.print(
        f"429s: {totals['rate_limited']} ({totals['rate_limited_expected']} expected on the low-rpm key, "
        f"{totals['rate_limited_unexpected']} elsewhere) · gateway RSS {memory}"
    )
    if result["windows"]:
        per_window = Table(title=f"per {result['rules']['window_s']:g} s window", title_justify="left")
        for column in ("window", "requests", "errors", "429", "p99 ms (all)"):
            per_window.add_column(column, justify="right")
        for w in result["windows"]:
            per_window.add_row(
                f"{w['start_s']:.0f}-{w['end_s']:.0f} s", str(w["requests"]), str(w["errors"]),
                str(w["rate_limited"]), _ms(w["p99_ms"]),
            )  # fmt: skip
        console.print(per_window)
    verdicts = Table(title="criteria", title_justify="left")
    for column in ("criterion", "value", "limit", "verdict", "note"):
        verdicts.add_column(column, overflow="fold")
    for c in result["criteria"]:
        verdict = {True: "[green]PASS[/]", False: "[red]FAIL[/]", None: "[yellow]not judged[/]"}[c["passed"]]
        verdicts.add_row(c["name"], str(c["value"]), c["limit"], verdict, c["note"])
    console.print(verdicts)
    plotted = f" · plot {result['plot']}" if result.get("plot") else ""
    console.print(f"{'PASS' if result['passed'] else 'FAIL'} · report {path}{plotted}")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


if __name__ == "__main__":
    sys.exit(main())
