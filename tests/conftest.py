"""Fixtures every test tree shares."""

import os

import pytest

# The time table per suite at the end of every run (tests/support/timetable.py).
pytest_plugins = ["tests.support.timetable"]


@pytest.fixture
def clean_lathe_env(monkeypatch):
    """No LATHE_* variable from the developer's shell leaks into a settings test."""
    for key in list(os.environ):
        if key.startswith("LATHE_"):
            monkeypatch.delenv(key)
