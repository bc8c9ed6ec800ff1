"""A real MLflow registry on a SQLite file, for the gate's and the harness's tests."""

from __future__ import annotations

import pytest

from lathe.registry import ModelRegistry


@pytest.fixture
def uri(tmp_path, monkeypatch, clean_lathe_env):
    monkeypatch.chdir(tmp_path)  # the SQLite store keeps artifacts under ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # MLflow sets it too; this restores it afterwards
    monkeypatch.setenv("LATHE_MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("LATHE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    import mlflow

    mlflow.set_tracking_uri(uri)  # the fluent API keeps the last URI any earlier test set
    return uri


@pytest.fixture
def registry(uri):
    return ModelRegistry(uri)
