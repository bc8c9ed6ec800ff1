"""Grafana's variables and intervals become the PromQL Grafana would send; legends name series as Grafana does."""

from __future__ import annotations

import pytest

from lathe.dashboards.variables import (
    Window,
    format_duration,
    legend_name,
    parse_duration,
    round_interval,
    substitute,
    variable_values,
)
from lathe.errors import ConfigError


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800), ("2h", 7200), ("1h30m", 5400), ("90s", 90),
                                                ("1d", 86400), ("500ms", 0.5)])  # fmt: skip
def test_durations_read_as_prometheus_writes_them(text, seconds):
    assert parse_duration(text, "--since") == seconds


@pytest.mark.parametrize("text", ["", "30", "3x", "m30", "-5m", "30 m", "0s"])
def test_a_bad_duration_names_the_option(text):
    with pytest.raises(ConfigError) as error:
        parse_duration(text, "--since")
    assert error.value.one_line().startswith("--since:")
    assert error.value.exit_code == 2


def test_durations_are_written_back_in_the_largest_whole_unit():
    assert [format_duration(s) for s in (20, 60, 90, 3600, 86400, 0.25)] == ["20s", "1m", "90s", "1h", "1d", "250ms"]


def test_intervals_round_as_grafana_rounds_them():
    assert [round_interval(s) for s in (3, 7, 14.4, 40, 100, 400)] == [2, 5, 15, 30, 120, 300]


def test_auto_step_follows_the_range_but_never_goes_below_the_scrape_interval():
    assert Window.last(1800, None, scrape_interval_s=5, now=10_000).step == 5  # 1800/600 = 3 s → scrape 5 s
    assert Window.last(6 * 3600, None, scrape_interval_s=5, now=10**6).step == 30  # 36 s → 30 s


def test_rate_interval_is_grafanas_max_of_step_plus_scrape_and_four_scrapes():
    window = Window.last(1800, None, scrape_interval_s=5, now=10_000)
    assert window.builtins()["__rate_interval"] == "20s"
    assert Window.last(86400, 60, scrape_interval_s=15, now=10**6).builtins()["__rate_interval"] == "75s"


def test_a_step_giving_more_points_than_prometheus_allows_names_the_option():
    with pytest.raises(ConfigError, match="--step"):
        Window.last(30 * 86400, 1, scrape_interval_s=5)


def test_window_ends_now_and_spans_the_range():
    window = Window.last(1800, 10, scrape_interval_s=5, now=1_700_000_000.7)
    assert (window.start, window.end) == (1_700_000_000 - 1800, 1_700_000_000)
    assert window.builtins() | {} == {
        "__interval": "10s", "__interval_ms": "10000", "__rate_interval": "20s",
        "__range": "30m", "__range_s": "1800", "__range_ms": "1800000",
    }  # fmt: skip


def test_every_variable_syntax_is_substituted_and_unknown_ones_stay():
    values = {"model": ".*", "__rate_interval": "20s"}
    expr = 'rate(x{model=~"$model", a=~"${model}", b=~"${model:regex}", c=~"[[model]]"}[$__rate_interval]) $other'
    assert substitute(expr, values) == 'rate(x{model=~".*", a=~".*", b=~".*", c=~".*"}[20s]) $other'


def _window() -> Window:
    return Window.last(1800, None, scrape_interval_s=5, now=10_000)


def _query_variable(**fields) -> dict:
    base = {"name": "model", "type": "query", "definition": "label_values(lathe_gateway_requests_total, model)",
            "query": {"query": "label_values(lathe_gateway_requests_total, model)"}, "multi": True,
            "includeAll": True, "current": {"text": "All", "value": "$__all"}}  # fmt: skip
    return base | fields


def test_all_uses_the_variables_all_value():
    values = variable_values([_query_variable(allValue=".*")], _window(), lambda *_: pytest.fail("no lookup needed"))
    assert values["model"] == ".*"


def test_all_without_an_all_value_is_a_regex_of_every_value_prometheus_has():
    asked = []

    def lookup(label, selector):
        asked.append((label, selector))
        return ["b.v2", "a", "a"]

    values = variable_values([_query_variable()], _window(), lookup)
    assert asked == [("model", "lathe_gateway_requests_total")]
    assert values["model"] == "(a|b\\\\.v2)"  # regex-escaped inside a PromQL string, as Grafana writes it


def test_chosen_values_of_a_multi_value_variable_become_an_alternation():
    chosen = _query_variable(current={"value": ["x", "y"]})
    assert variable_values([chosen], _window(), lambda *_: [])["model"] == "(x|y)"
    single = _query_variable(multi=False, includeAll=False, current={"value": "smollm2.v1"})
    assert variable_values([single], _window(), lambda *_: [])["model"] == "smollm2.v1"


def test_custom_constant_and_interval_variables():
    variables = [
        {"name": "env", "type": "custom", "multi": True, "current": {"value": "$__all"},
         "options": [{"value": "$__all"}, {"value": "dev"}, {"value": "prod"}], "includeAll": True},
        {"name": "ns", "type": "constant", "query": "lathe"},
        {"name": "every", "type": "interval", "current": {"value": "auto"}},
        {"name": "datasource", "type": "datasource", "query": "prometheus"},
    ]  # fmt: skip
    values = variable_values(variables, _window(), lambda *_: [])
    assert (values["env"], values["ns"], values["every"]) == ("(dev|prod)", "lathe", "5s")
    assert "datasource" not in values


def test_legend_format_fills_labels_and_leaves_missing_ones_empty():
    labels = {"model": "smollm2", "direction": "out"}
    assert legend_name("{{model}} {{ direction }}", labels, "expr") == "smollm2 out"
    assert legend_name("p99 {{model}} {{missing}}", labels, "expr") == "p99 smollm2 "


def test_auto_legend_shows_the_labels_or_the_query():
    assert legend_name("__auto", {"model": "m", "__name__": "up"}, "up") == 'up{model="m"}'
    assert legend_name("", {"status": "200", "model": "m"}, "sum by (model, status) (x)") == (
        '{model="m", status="200"}'
    )
    assert legend_name("__auto", {}, "sum(rate(x[5m]))") == "sum(rate(x[5m]))"
