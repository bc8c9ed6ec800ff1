"""Values and axis ticks written in a panel's unit, as Grafana writes them."""

from __future__ import annotations

import math

import pytest

from lathe.dashboards.units import axis_ticks, format_value


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (0.0042, "s", "4.2 ms"), (1.5, "s", "1.5 s"), (90, "s", "1.5 min"), (2e-7, "s", "200 ns"), (0, "s", "0 s"),
        (250, "ms", "250 ms"), (1500, "ms", "1.5 s"), (0, "ms", "0 ms"),
        (512, "bytes", "512 B"), (3 * 2**30, "bytes", "3 GiB"), (1536, "bytes", "1.5 KiB"),
        (2_500_000, "decbytes", "2.5 MB"),
        (0.25, "percentunit", "25%"), (0.005, "percentunit", "0.5%"), (42, "percent", "42%"),
        (0.37, "reqps", "0.37 req/s"), (1234, "reqps", "1.23 K req/s"),
        (1234, "short", "1.23 K"), (2.5e6, "short", "2.5 Mil"), (7, "short", "7"), (0.0005, "short", "0.0005"),
        (12, "none", "12"), (3, "tokens", "3 tokens"), (5, "suffix:/run", "5/run"), (3, "prefix:$", "$3"),
        (None, "s", "No data"), (math.nan, "s", "NaN"), (math.inf, "short", "+Inf"),
    ],
)  # fmt: skip
def test_a_value_is_written_on_its_units_scale(value, unit, text):
    assert format_value(value, unit) == text


def test_percent_ticks_cover_the_data_from_zero():
    values, labels = axis_ticks(0.05, 0.9, "percentunit")
    assert labels == ["0%", "20%", "40%", "60%", "80%", "100%"]
    assert values[0] == 0 and values[-1] == pytest.approx(1.0)


def test_latency_ticks_use_one_scale_for_the_whole_axis():
    _, labels = axis_ticks(0, 0.0031, "s")
    assert labels == ["0 ms", "1 ms", "2 ms", "3 ms", "4 ms"]
    _, labels = axis_ticks(0, 3 * 2**30, "bytes")
    assert labels == ["0 GiB", "1 GiB", "2 GiB", "3 GiB"]


def test_ticks_of_a_flat_or_negative_series_still_make_an_axis():
    values, labels = axis_ticks(0, 0, "reqps")
    assert len(values) >= 2 and labels[0] == "0 req/s"
    values, labels = axis_ticks(-3, 7, "short")
    assert values[0] <= -3 and values[-1] >= 7 and "0" in labels
