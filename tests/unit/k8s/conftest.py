"""Fixtures of the chart tests: each ci/*-values.yaml rendered once per session."""

from __future__ import annotations

import pytest

from tests.unit.k8s import manifests


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    """``values file name -> rendered objects`` for every ci/*-values.yaml."""
    pytest.importorskip("helm_python", reason="pip install helm-python-sdk (in the dev extras)")
    return {path.name: manifests.render(manifests.load_values(path)) for path in manifests.CI_VALUES}


@pytest.fixture(scope="session")
def default_objects(rendered) -> list[dict]:
    return rendered["default-values.yaml"]


@pytest.fixture(scope="session")
def all_objects(rendered) -> list[tuple[str, dict]]:
    """``(values file, object)`` over every values set."""
    return [(name, obj) for name, objects in rendered.items() for obj in objects]
