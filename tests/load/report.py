"""From the per-request samples of a Locust run to figures, criteria and a verdict.

Pure functions over what ``locustfile.py`` writes (one CSV row per request: end time,
type, name, milliseconds, failure kind) and the gateway's RSS samples; ``run.py``
calls them and ``test_report.py`` checks them on made-up samples.

Latency percentiles (nearest rank) are over successful requests only: a 429 answers
in a millisecond and would flatter them. ``TTFT`` rows (a stream's first token) are a
latency of their own, not requests. Requests on the low-rpm key are there to be
refused: their 429s are expected and never count as errors.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Must match the request name the locustfile gives the low-rpm key's chats.
LOW_RPM_NAME = "chat (low-rpm key)"


@dataclass(frozen=True)
class Sample:
    end: float  # epoch seconds
    type: str  # POST, or TTFT for a stream's first token
    name: str
    ms: float
    kind: str  # '' for a success, else the failure kind

    @property
    def start(self) -> float:
        return self.end - self.ms / 1000

    @property
    def scenario(self) -> str:
        return f"{self.name} ttft" if self.type == "TTFT" else self.name

    @property
    def is_request(self) -> bool:
        return self.type != "TTFT"


@dataclass(frozen=True)
class Rules:
    """The soak's pass/fail rules; each knob says why it is what it is."""

    # RSS may grow this much (%) from the end of the warm-up to the end: allocator
    # arenas and caches settle in the first minute; a leak keeps growing after it.
    max_rss_growth_pct: float = 10.0
    warmup_s: float = 60.0
    # Stable latency, per scenario: the last window's p99 ≤ factor × the first's + slack.
    # The slack absorbs the jitter of the slowest of a handful of requests on two shared
    # cores (a 70 ms embedding now and then takes 500 ms); a queue that keeps growing, or
    # a leak that slows every request, moves it by more.
    p99_factor: float = 1.5
    p99_slack_ms: float = 1000.0
    window_s: float = 60.0
    # A scenario with fewer successes in the first or the last window is not judged. At the
    # soak's rate a scenario has 5-15 requests a minute: its p99 is that minute's slowest.
    min_window_samples: int = 5
    # Every scenario that ran must have at least this many successes.
    min_ok: int = 1


def read_samples(path: Path) -> list[Sample]:
    with open(path, newline="") as handle:
        return [
            Sample(float(row["end"]), row["type"], row["name"], float(row["ms"]), row["kind"])
            for row in csv.DictReader(handle)
        ]


def failure_messages(path: Path, limit: int = 5) -> list[dict[str, Any]]:
    """The commonest failures but 429s, with Locust's own message (``locust_failures.csv``), so
    a failed run says what went wrong and not only which kind of failure it was."""
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        # Locust writes a failure as the repr of its exception: CatchResponseError('rate_limited: HTTP 429').
        rows = [r for r in csv.DictReader(handle) if "rate_limited:" not in r.get("Error", "")]
    rows.sort(key=lambda r: -int(r.get("Occurrences") or 0))
    return [{"name": r["Name"], "error": r["Error"], "occurrences": int(r["Occurrences"])} for r in rows[:limit]]


def percentile(values: list[float], q: float) -> float | None:
    """Nearest rank: the smallest value with at least q % of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def span(samples: list[Sample]) -> tuple[float, float]:
    return min(s.start for s in samples), max(s.end for s in samples)


def _row(samples: list[Sample], seconds: float) -> dict[str, Any]:
    ok = [s.ms for s in samples if not s.kind]
    kinds: dict[str, int] = {}
    for s in samples:
        if s.kind:
            kinds[s.kind] = kinds.get(s.kind, 0) + 1
    limited = kinds.get("rate_limited", 0)
    return {
        "requests": len(samples),
        "ok": len(ok),
        "rate_limited": limited,
        "errors": len(samples) - len(ok) - limited,
        "failures_by_kind": dict(sorted(kinds.items())),
        "rps": round(len(samples) / seconds, 3) if seconds > 0 else 0.0,
        **{f"p{q}_ms": _round(percentile(ok, q)) for q in (50, 95, 99)},
        "max_ms": _round(max(ok) if ok else None),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def summarise(samples: list[Sample]) -> dict[str, Any]:
    """Per scenario and in total: requests, successes, 429s, other errors by kind, RPS, p50/p95/p99."""
    if not samples:
        return {"seconds": 0.0, "scenarios": {}, "totals": _row([], 0.0)}
    first, last = span(samples)
    seconds = last - first
    names = sorted({s.scenario for s in samples})
    scenarios = {name: _row([s for s in samples if s.scenario == name], seconds) for name in names}
    requests = [s for s in samples if s.is_request]
    totals = _row(requests, seconds)
    expected = scenarios.get(LOW_RPM_NAME, {}).get("rate_limited", 0)
    totals["rate_limited_expected"] = expected
    totals["rate_limited_unexpected"] = totals["rate_limited"] - expected
    return {"seconds": round(seconds, 1), "scenarios": scenarios, "totals": totals}


def judged(sample: Sample) -> bool:
    """What the latency windows are made of: successful requests at the normal key."""
    return sample.is_request and not sample.kind and sample.name != LOW_RPM_NAME


def windows(samples: list[Sample], window_s: float) -> list[dict[str, Any]]:
    """Consecutive windows from the first request's start, by completion time; the last one
    runs to the end (between half and one and a half windows long). Each holds the p99 of
    every judged request together and per scenario, with the number of each."""
    if not samples:
        return []
    first, last = span(samples)
    count = max(1, round((last - first) / window_s))
    out = []
    for k in range(count):
        lo = first + k * window_s
        hi = first + (k + 1) * window_s if k < count - 1 else math.inf
        inside = [s for s in samples if lo <= s.end < hi]
        ok = [s for s in inside if judged(s) or (s.type == "TTFT" and not s.kind)]
        by_scenario: dict[str, list[float]] = {}
        for s in ok:
            by_scenario.setdefault(s.scenario, []).append(s.ms)
        out.append(
            {
                "index": k,
                "start_s": round(k * window_s, 1),
                "end_s": round(min(hi, last) - first, 1),
                "requests": sum(1 for s in inside if s.is_request),
                "errors": sum(1 for s in inside if s.kind and s.kind != "rate_limited"),
                "rate_limited": sum(1 for s in inside if s.kind == "rate_limited"),
                "judged": sum(1 for s in ok if s.is_request),
                "p99_ms": _round(percentile([s.ms for s in ok if s.is_request], 99)),
                "ok_by_scenario": {name: len(v) for name, v in sorted(by_scenario.items())},
                "p99_ms_by_scenario": {name: _round(percentile(v, 99)) for name, v in sorted(by_scenario.items())},
            }
        )
    return out


def rss_growth(rss: list[tuple[float, int]], started: float, warmup_s: float) -> dict[str, Any]:
    """RSS at the end of the warm-up and at the end (median of three samples each) and the growth."""
    after = [value for t, value in rss if t - started >= warmup_s]
    if len(after) < 2:  # too short to judge: what there is, for the record
        ends = {"first_mib": _mib(rss[0][1]), "last_mib": _mib(rss[-1][1])} if rss else {"last_mib": None}
        return {"warmup_s": warmup_s, "samples": len(rss), **ends, "baseline_mib": None, "growth_pct": None}
    baseline = _median(after[:3])
    last = _median(after[-3:])
    return {
        "warmup_s": warmup_s,
        "samples": len(rss),
        "first_mib": _mib(rss[0][1]),
        "baseline_mib": _mib(baseline),
        "last_mib": _mib(last),
        "max_mib": _mib(max(value for _, value in rss)),
        "growth_pct": round(100 * (last - baseline) / baseline, 2),
    }


def _median(values: list[int]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _mib(value: float) -> float:
    return round(value / 2**20, 1)


def max_admitted_per_minute(samples: list[Sample], name: str = LOW_RPM_NAME) -> int:
    """Most successes of ``name`` that started within any 58 s: the key's quota must bound it.
    (58, not 60: the client sees a request start a little before the gateway admits it.)"""
    starts = sorted(s.start for s in samples if s.name == name and s.is_request and not s.kind)
    best, lo = 0, 0
    for hi, t in enumerate(starts):
        while t - starts[lo] >= 58.0:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def criterion(name: str, value: Any, limit: str, passed: bool | None, note: str = "") -> dict[str, Any]:
    """``passed`` None: not judged (too little data); shown, and not a failure."""
    return {"name": name, "value": value, "limit": limit, "passed": passed, "note": note}


def judge(
    samples: list[Sample],
    summary: dict[str, Any],
    rules: Rules,
    *,
    limited_rpm: int | None = None,
    rss: dict[str, Any] | None = None,
    window_stats: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The criteria: no errors but 429s, every scenario served, the low-rpm key held to its
    quota; in a soak also RSS growth after the warm-up and p99 of the first vs the last window."""
    totals = summary["totals"]
    out = [
        criterion(
            "errors other than 429",
            totals["errors"],
            "= 0",
            totals["errors"] == 0,
            ", ".join(f"{k} {v}" for k, v in totals["failures_by_kind"].items() if k != "rate_limited"),
        )
    ]
    served = {
        name: row["ok"]
        for name, row in summary["scenarios"].items()
        if name != LOW_RPM_NAME and not name.endswith(" ttft")
    }
    starved = [name for name, ok in served.items() if ok < rules.min_ok]
    out.append(
        criterion(
            "every scenario served",
            f"min {min(served.values()) if served else 0} ok",
            f">= {rules.min_ok} each",
            bool(served) and not starved,
            f"too few: {', '.join(starved)}" if starved else ", ".join(f"{k} {v}" for k, v in served.items()),
        )
    )
    if limited_rpm is not None and LOW_RPM_NAME in summary["scenarios"]:
        row = summary["scenarios"][LOW_RPM_NAME]
        admitted = max_admitted_per_minute(samples)
        out.append(
            criterion(
                "low-rpm key held to its quota",
                f"{admitted} admitted/min, {row['rate_limited']} × 429",
                f"<= {limited_rpm}/min",
                admitted <= limited_rpm,
                "its 429s are expected",
            )
        )
    if rss is not None:
        growth = rss.get("growth_pct")
        out.append(
            criterion(
                "gateway RSS growth after warm-up",
                None if growth is None else f"{rss['baseline_mib']} → {rss['last_mib']} MiB ({growth:+.2f} %)",
                f"<= {rules.max_rss_growth_pct:g} %",
                None if growth is None else growth <= rules.max_rss_growth_pct,
                f"baseline at {rules.warmup_s:g} s (median of 3 samples), last = median of the last 3",
            )
        )
    if window_stats is not None:
        out.append(_p99_criterion(window_stats, rules))
    return out


def _p99_criterion(window_stats: list[dict[str, Any]], rules: Rules) -> dict[str, Any]:
    """Per scenario, like with like: a window's mix of fast embeddings and slow agent runs
    varies by chance, and a p99 over all of them would move with it."""
    name = "p99 stable (first vs last window)"
    limit = f"last <= {rules.p99_factor:g} × first + {rules.p99_slack_ms:g} ms, per scenario"
    if len(window_stats) < 2:
        return criterion(name, None, limit, None, f"fewer than two {rules.window_s:g} s windows")
    first, last = window_stats[0], window_stats[-1]
    compared, failing, skipped = [], [], []
    for scenario in sorted(set(first["ok_by_scenario"]) | set(last["ok_by_scenario"])):
        counts = first["ok_by_scenario"].get(scenario, 0), last["ok_by_scenario"].get(scenario, 0)
        if min(counts) < rules.min_window_samples:
            skipped.append(f"{scenario} ({counts[0]}/{counts[1]})")
            continue
        before, after = first["p99_ms_by_scenario"][scenario], last["p99_ms_by_scenario"][scenario]
        bound = rules.p99_factor * before + rules.p99_slack_ms
        compared.append(f"{scenario} {before:.0f} → {after:.0f}")
        if after > bound:
            failing.append(f"{scenario} {after:.0f} > {bound:.0f} ms")
    notes = []
    if failing:
        notes.append("over: " + ", ".join(failing))
    if skipped:
        notes.append(f"not judged (< {rules.min_window_samples} requests in a window): " + ", ".join(skipped))
    if not compared:
        return criterion(name, None, limit, None, "; ".join(notes))
    return criterion(name, "; ".join(compared) + " ms", limit, not failing, "; ".join(notes))


def passed(criteria: list[dict[str, Any]]) -> bool:
    return all(c["passed"] is not False for c in criteria)


def plot(report: dict[str, Any], path: Path) -> bool:
    """RSS and p99 per window over time as a PNG; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    started = report["started_epoch"]
    rss = report["rss"]["series"]
    mib = [v / 2**20 for _, v in rss]
    top.plot([(t - started) / 60 for t, _ in rss], mib, color="tab:blue", label="gateway RSS")
    top.axvline(report["rules"]["warmup_s"] / 60, color="grey", linestyle=":", label="end of warm-up")
    baseline = report["rss"].get("baseline_mib")
    if baseline:
        growth = report["rules"]["max_rss_growth_pct"]
        top.axhline(baseline * (1 + growth / 100), color="tab:red", linestyle="--", label=f"limit (+{growth:g} %)")
    top.set_ylim(0, max([*mib, baseline or 0]) * 1.25)  # from zero: flat means flat
    top.set_ylabel("RSS (MiB)")
    top.legend(loc="lower right", fontsize=8)
    top.grid(alpha=0.3)
    stats = report["windows"]
    mids = [(w["start_s"] + w["end_s"]) / 120 for w in stats]
    bottom.plot(mids, [w["p99_ms"] for w in stats], marker="o", color="black", label="all scenarios")
    for name in sorted({n for w in stats for n in w["p99_ms_by_scenario"]}):
        values = [w["p99_ms_by_scenario"].get(name) for w in stats]
        bottom.plot(mids, values, marker=".", linestyle="--", alpha=0.6, label=name)
    bottom.set_ylabel(f"p99 per {report['rules']['window_s']:g} s window (ms)")
    bottom.set_xlabel("minutes since the first request")
    bottom.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    bottom.grid(alpha=0.3)
    fig.suptitle(f"Lathe soak: {report['scenario']} at {report.get('target_rps') or '-'} req/s")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
