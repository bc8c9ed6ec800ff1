"""Fixtures every test tree shares."""

import os

import pytest


@pytest.fixture
def clean_lathe_env(monkeypatch):
    """No LATHE_* variable from the developer's shell leaks into a settings test."""
    for key in list(os.environ):
        if key.startswith("LATHE_"):
            monkeypatch.delenv(key)
