"""A real MLflow registry on SQLite for the inference service's tests."""

import pytest

from lathe.registry import ModelRegistry


@pytest.fixture
def registry(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the SQLite store keeps artifacts under ./mlruns
    return ModelRegistry(f"sqlite:///{tmp_path / 'mlflow.db'}")
