"""`lathe up` starts components side by side unless one waits for another (STARTS_AFTER)."""

from __future__ import annotations

import threading

import pytest

from lathe.errors import PlatformError
from lathe.platform.local import STARTS_AFTER, start_in_order

NAMES = ["mlflow", "ray", "inference", "rag", "agent", "gateway", "prometheus"]


def test_a_component_starts_only_after_those_it_waits_for():
    finished: list[str] = []
    lock = threading.Lock()

    def start(name: str) -> None:
        with lock:
            for dependency in STARTS_AFTER.get(name, ()):
                assert dependency in finished, f"{name} started before {dependency} was up"
        with lock:
            finished.append(name)

    start_in_order(NAMES, STARTS_AFTER, start)
    assert sorted(finished) == sorted(NAMES)


def test_independent_components_start_side_by_side():
    # ray and rag each wait (bounded) until the other has begun: only possible side by side.
    begun = {name: threading.Event() for name in ("ray", "rag")}

    def start(name: str) -> None:
        if name in begun:
            begun[name].set()
            other = begun["rag" if name == "ray" else "ray"]
            assert other.wait(timeout=10), f"{name} ran alone"

    start_in_order(NAMES, STARTS_AFTER, start)


def test_the_first_failure_is_raised_and_its_dependants_never_start():
    started: list[str] = []
    lock = threading.Lock()

    def start(name: str) -> None:
        if name == "mlflow":
            raise PlatformError("mlflow did not start")
        with lock:
            started.append(name)

    with pytest.raises(PlatformError, match="mlflow did not start"):
        start_in_order(NAMES, STARTS_AFTER, start)
    assert "inference" not in started and "gateway" not in started
    assert {"ray", "rag", "agent", "prometheus"} <= set(started)


def test_components_that_wait_for_each_other_are_refused():
    with pytest.raises(PlatformError, match="wait for each other"):
        start_in_order(["a", "b"], {"a": ("b",), "b": ("a",)}, lambda name: None)
