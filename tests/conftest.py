"""Fixtures every test tree shares."""

import os

import pytest

# The time table per suite at the end of every run (tests/support/timetable.py).
pytest_plugins = ["tests.support.timetable"]


@pytest.fixture(scope="session", autouse=True)
def shared_encoder_cache(tmp_path_factory):
    """One ONNX export of the embedding model for the whole run, not one per LATHE_HOME."""
    if "LATHE_RAG_ENCODER_CACHE" not in os.environ:
        os.environ["LATHE_RAG_ENCODER_CACHE"] = str(tmp_path_factory.mktemp("encoders"))
    yield


@pytest.fixture
def clean_lathe_env(monkeypatch):
    """No LATHE_* variable from the developer's shell leaks into a settings test."""
    for key in list(os.environ):
        if key.startswith("LATHE_"):
            monkeypatch.delenv(key)
