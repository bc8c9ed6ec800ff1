"""Grafana's units (``fieldConfig.defaults.unit``): values and axis ticks as Grafana writes them.

    format_value(0.0042, "s")        # '4.2 ms'
    format_value(3 * 2**30, "bytes") # '3 GiB'
    format_value(0.25, "percentunit")# '25%'
    axis_ticks(0, 0.9, "percentunit")# ([0, 0.2, 0.4, 0.6, 0.8, 1.0], ['0%', '20%', …, '100%'])

A unit is a ladder of scales (``ms``, ``s``, ``min``…; ``B``, ``KiB``, ``MiB``…): a value
is written on the largest step of the ladder it reaches. An unknown unit is written after
the number, as Grafana does with a custom unit; ``suffix:X`` and ``prefix:X`` work too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Ladder = tuple[tuple[float, str], ...]

_TIME: Ladder = (
    (1e-9, " ns"), (1e-6, " µs"), (1e-3, " ms"), (1, " s"), (60, " min"), (3600, " hour"), (86400, " day"),
    (604800, " week"), (31536000, " year"),
)  # fmt: skip
_SHORT: Ladder = ((1, ""), (1e3, " K"), (1e6, " Mil"), (1e9, " Bil"), (1e12, " Tri"))
_IEC: Ladder = ((1, " B"), (2**10, " KiB"), (2**20, " MiB"), (2**30, " GiB"), (2**40, " TiB"), (2**50, " PiB"))
_SI_BYTES: Ladder = ((1, " B"), (1e3, " kB"), (1e6, " MB"), (1e9, " GB"), (1e12, " TB"), (1e15, " PB"))
_BITS: Ladder = ((1, " b"), (2**10, " Kib"), (2**20, " Mib"), (2**30, " Gib"), (2**40, " Tib"))


def _rate(suffix: str) -> Ladder:
    return ((1, f" {suffix}"), (1e3, f" K {suffix}"), (1e6, f" M {suffix}"), (1e9, f" B {suffix}"))


def _per_second(ladder: Ladder) -> Ladder:
    return tuple((factor, f"{suffix}/s") for factor, suffix in ladder)


@dataclass(frozen=True)
class Unit:
    """``multiplier`` turns a raw value into the ladder's base; ``floor`` is the smallest step used."""

    ladder: Ladder
    multiplier: float = 1.0
    floor: int = 0
    zero: int = 0  # the step that writes zero ("0 s", "0 ms", "0 B")


UNITS: dict[str, Unit] = {
    "short": Unit(_SHORT),
    "none": Unit(((1, ""),)),
    "percent": Unit(((1, "%"),)),
    "percentunit": Unit(((1, "%"),), multiplier=100),
    "ns": Unit(_TIME, multiplier=1e-9, zero=0),
    "µs": Unit(_TIME, multiplier=1e-6, zero=1),
    "ms": Unit(_TIME, multiplier=1e-3, floor=2, zero=2),
    "s": Unit(_TIME, zero=3),
    "m": Unit(_TIME, multiplier=60, floor=4, zero=4),
    "h": Unit(_TIME, multiplier=3600, floor=5, zero=5),
    "d": Unit(_TIME, multiplier=86400, floor=6, zero=6),
    "bytes": Unit(_IEC),
    "decbytes": Unit(_SI_BYTES),
    "kbytes": Unit(_IEC, multiplier=2**10),
    "mbytes": Unit(_IEC, multiplier=2**20),
    "bits": Unit(_BITS),
    "Bps": Unit(_per_second(_SI_BYTES)),
    "binBps": Unit(_per_second(_IEC)),
    "bps": Unit(_per_second(((1, " b"), (1e3, " kb"), (1e6, " Mb"), (1e9, " Gb")))),
    "reqps": Unit(_rate("req/s")),
    "rps": Unit(_rate("rd/s")),
    "wps": Unit(_rate("wr/s")),
    "ops": Unit(_rate("ops/s")),
    "iops": Unit(_rate("io/s")),
    "cps": Unit(_rate("c/s")),
    "opm": Unit(_rate("ops/min")),
    "reqpm": Unit(_rate("req/min")),
}
UNITS["dtdurations"] = UNITS["s"]
UNITS["percent0-1"] = UNITS["percentunit"]


def unit_of(name: str | None) -> Unit:
    """A Grafana unit by name; an unknown one is written as a suffix after the number."""
    name = name or "short"
    if name in UNITS:
        return UNITS[name]
    if name.startswith("suffix:"):
        return Unit(((1, name.removeprefix("suffix:")),))
    if name.startswith("prefix:"):
        return Unit(((1, ""),))
    return Unit(((1, f" {name}"),))


def scale(value: float, unit_name: str | None) -> tuple[float, str]:
    """The factor a value is divided by, and the suffix written after it."""
    unit = unit_of(unit_name)
    size = abs(value * unit.multiplier)
    if size == 0 or not math.isfinite(size):
        factor, suffix = unit.ladder[unit.zero]
        return factor / unit.multiplier, suffix
    index = unit.floor
    for i, (factor, _) in enumerate(unit.ladder):
        if i >= unit.floor and size >= factor * 0.9999999:
            index = i
    factor, suffix = unit.ladder[index]
    return factor / unit.multiplier, suffix


def format_number(value: float, decimals: int | None = None) -> str:
    if decimals is None:
        size = abs(value)
        if size >= 100 or value == int(value):
            decimals = 0
        else:
            decimals = 1 if size >= 10 else 2 if size >= 1 else 1 - math.floor(math.log10(size))
    text = f"{value:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def format_value(value: float | None, unit_name: str | None, decimals: int | None = None) -> str:
    """One value with its unit, e.g. ``1.5 s``; None and NaN are ``No data`` and ``NaN``."""
    if value is None:
        return "No data"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    prefix = (unit_name or "").removeprefix("prefix:") if (unit_name or "").startswith("prefix:") else ""
    factor, suffix = scale(value, unit_name)
    return f"{prefix}{format_number(value / factor, decimals)}{suffix}"


def nice_step(span: float, count: int = 5) -> float:
    """A 1-2-5 step that splits ``span`` into about ``count`` parts."""
    raw = span / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 2.5, 5, 10):
        if raw <= multiple * magnitude:
            return multiple * magnitude
    return 10 * magnitude


def axis_ticks(low: float, high: float, unit_name: str | None, count: int = 5) -> tuple[list[float], list[str]]:
    """Tick positions covering ``[low, high]`` and their labels in the unit, all on one scale."""
    low = min(low, 0.0)
    if high <= low:
        high = low + (1.0 / unit_of(unit_name).multiplier if low == 0 else abs(low))
    factor, suffix = scale(max(abs(low), abs(high)), unit_name)
    step = nice_step((high - low) / factor, count)
    first = math.floor(low / factor / step + 1e-9)
    last = math.ceil(high / factor / step - 1e-9)
    decimals = next(d for d in range(12) if abs(step * 10**d - round(step * 10**d)) < 1e-6)
    ticks = [i * step for i in range(first, last + 1)]
    prefix = (unit_name or "").removeprefix("prefix:") if (unit_name or "").startswith("prefix:") else ""
    labels = [f"{prefix}{format_number(t, decimals)}{suffix}" for t in ticks]
    return [t * factor for t in ticks], labels
