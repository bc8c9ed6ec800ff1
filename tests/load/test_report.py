"""The load report's arithmetic and verdicts on made-up samples (no platform, no Locust)."""

from __future__ import annotations

import pytest

from tests.load import report
from tests.load.report import LOW_RPM_NAME, Rules, Sample
from tests.load.run import parse_duration

T0 = 1_000_000.0


def s(t: float, name: str = "chat", ms: float = 100.0, kind: str = "", type_: str = "POST") -> Sample:
    return Sample(T0 + t, type_, name, ms, kind)


def test_percentiles_are_nearest_rank():
    values = list(range(1, 101))
    assert report.percentile(values, 50) == 50
    assert report.percentile(values, 99) == 99
    assert report.percentile([7.0], 99) == 7.0
    assert report.percentile([], 99) is None


def test_summary_counts_429s_apart_from_errors_and_ttft_apart_from_requests():
    samples = [s(1, ms=200), s(2, ms=400), s(3, kind="http_5xx", ms=5), s(4, name=LOW_RPM_NAME, kind="rate_limited")]
    samples += [s(5, name="stream", ms=900), s(5, name="stream", ms=300, type_="TTFT"), s(11, name="embeddings")]
    summary = report.summarise(samples)
    chat = summary["scenarios"]["chat"]
    assert (chat["requests"], chat["ok"], chat["errors"], chat["rate_limited"]) == (3, 2, 1, 0)
    assert chat["p99_ms"] == 400  # failures are not in the percentiles
    assert summary["scenarios"]["stream ttft"]["p50_ms"] == 300
    totals = summary["totals"]
    assert totals["requests"] == 6  # the TTFT row is a latency, not a request
    assert totals["rate_limited_expected"] == 1 and totals["rate_limited_unexpected"] == 0
    assert totals["failures_by_kind"] == {"http_5xx": 1, "rate_limited": 1}


def test_criteria_fail_on_any_error_but_429_and_on_a_starved_scenario():
    samples = [s(1), s(2, name="agent", kind="bad_response"), s(3, name=LOW_RPM_NAME, kind="rate_limited")]
    criteria = report.judge(samples, report.summarise(samples), Rules())
    verdicts = {c["name"]: c["passed"] for c in criteria}
    assert verdicts == {"errors other than 429": False, "every scenario served": False}
    assert not report.passed(criteria)

    fine = [s(1), s(2, name="agent"), s(3, name=LOW_RPM_NAME, kind="rate_limited")]
    assert report.passed(report.judge(fine, report.summarise(fine), Rules()))


def test_the_low_rpm_key_must_stay_within_its_quota():
    within = [s(t, name=LOW_RPM_NAME) for t in (0, 30, 61, 90)] + [s(40, name=LOW_RPM_NAME, kind="rate_limited")]
    over = [s(t, name=LOW_RPM_NAME) for t in (0, 20, 40)]
    assert report.max_admitted_per_minute(within) == 2
    assert report.max_admitted_per_minute(over) == 3
    [held] = [c for c in report.judge(within, report.summarise(within), Rules(), limited_rpm=2) if "quota" in c["name"]]
    [broken] = [c for c in report.judge(over, report.summarise(over), Rules(), limited_rpm=2) if "quota" in c["name"]]
    assert held["passed"] is True and broken["passed"] is False


def test_rss_growth_is_measured_after_the_warm_up():
    mib = 2**20
    series = [(T0 + t, (100 if t < 60 else 200) * mib) for t in range(0, 60, 5)]  # the warm-up doubles it…
    series += [(T0 + t, (200 + (t - 60) // 60) * mib) for t in range(60, 600, 5)]  # …then +1 MiB a minute
    rss = report.rss_growth(series, T0, warmup_s=60)
    assert rss["baseline_mib"] == 200 and rss["last_mib"] == 208
    assert rss["growth_pct"] == 4.0
    [criterion] = report.judge([s(1)], report.summarise([s(1)]), Rules(), rss=rss)[2:]
    assert criterion["passed"] is True
    assert report.rss_growth(series[:3], T0, warmup_s=60)["growth_pct"] is None  # too short to judge


def _windows(first_ms: float, last_ms: float, per_window: int = 30) -> list[dict]:
    """Three minutes of requests started evenly, the first and last minutes at the given latency."""
    starts = [i * 60 / per_window for i in range(per_window)]
    samples = [s(t + first_ms / 1000, ms=first_ms) for t in starts]
    samples += [s(60 + t + 0.1, ms=100) for t in starts]
    samples += [s(120 + t + last_ms / 1000, ms=last_ms) for t in starts]
    return report.windows([*samples, s(185, name=LOW_RPM_NAME, ms=1, kind="rate_limited")], 60)


@pytest.mark.parametrize(
    ("first", "last", "verdict"),
    [(2000, 3000, True), (2000, 3900, True), (2000, 4100, False), (100, 1100, True), (100, 1300, False)],
)
def test_p99_of_the_last_window_is_bounded_by_the_first(first, last, verdict):
    stats = _windows(first, last)
    assert len(stats) == 3 and min(w["judged"] for w in stats) >= 25  # the tail past 180 s is left out
    [criterion] = report.judge([s(1)], report.summarise([s(1)]), Rules(), window_stats=stats)[2:]
    assert criterion["passed"] is verdict, criterion


def test_p99_is_not_judged_on_windows_too_small_to_have_one():
    [criterion] = report.judge([s(1)], report.summarise([s(1)]), Rules(), window_stats=_windows(100, 9000, 4))[2:]
    assert criterion["passed"] is None and "chat (4/4)" in criterion["note"]
    assert report.passed([criterion])


def test_p99_compares_each_scenario_with_itself_whatever_the_mix_of_a_window():
    first = [s(t, ms=2000) for t in range(5, 60, 5)] + [s(t + 0.5, "embeddings", ms=50) for t in range(0, 55, 5)]
    last = [s(t, ms=2100) for t in range(65, 120, 5)] + [s(t + 0.5, "embeddings", ms=60) for t in range(60, 115, 5)]
    slow = [s(t, name="agent", ms=9000) for t in (100, 110, 119)]  # three agent runs, only at the end
    stats = report.windows(first + last + slow, 60)
    assert stats[1]["p99_ms"] == 9000  # all together, the last minute looks four times slower…
    [criterion] = report.judge([s(1)], report.summarise([s(1)]), Rules(), window_stats=stats)[2:]
    assert criterion["passed"] is True, criterion  # …yet neither chat nor embeddings slowed down
    assert "agent (0/3)" in criterion["note"]


def test_durations_read_like_locusts():
    assert parse_duration("90") == 90 and parse_duration("90s") == 90
    assert parse_duration("10m") == 600 and parse_duration("1h30m") == 5400
    with pytest.raises(Exception, match="not a duration"):
        parse_duration("ten minutes")


def test_failure_messages_keep_locusts_words_commonest_first_without_429s(tmp_path):
    path = tmp_path / "locust_failures.csv"
    path.write_text(
        "Method,Name,Error,Occurrences\n"
        "POST,agent,CatchResponseError('bad_response: the run ended without a calculator result'),1\n"
        "POST,chat low-rpm,CatchResponseError('rate_limited: HTTP 429'),40\n"
        "POST,rag,CatchResponseError('http_5xx: HTTP 503 engine_unavailable'),3\n"
    )
    assert report.failure_messages(path) == [
        {"name": "rag", "error": "CatchResponseError('http_5xx: HTTP 503 engine_unavailable')", "occurrences": 3},
        {"name": "agent", "error": "CatchResponseError('bad_response: the run ended without a calculator result')",
         "occurrences": 1},
    ]  # fmt: skip
    assert report.failure_messages(tmp_path / "absent.csv") == []
