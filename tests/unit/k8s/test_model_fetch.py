"""The vLLM pods' init container: resolve the alias (or take the pinned version), download, link."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from lathe import model_fetch
from lathe.errors import AliasNotFoundError, RegistryUnavailableError


class FakeRegistry:
    """Stands in for ``lathe.registry.ModelRegistry`` (MLflow is tested in tests/integration)."""

    calls: ClassVar[list[tuple]] = []
    fail_with: ClassVar[Exception | None] = None

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri

    def resolve(self, name: str, alias: str):
        if FakeRegistry.fail_with:
            raise FakeRegistry.fail_with
        return type("Version", (), {"version": "7"})()

    def download(self, name: str, version: str, dest: Path) -> Path:
        FakeRegistry.calls.append((name, version))
        folder = dest / name / version
        folder.mkdir(parents=True, exist_ok=True)
        return folder


def test_alias_is_resolved_and_served_links_to_the_version(tmp_path, monkeypatch):
    monkeypatch.setattr("lathe.registry.ModelRegistry", FakeRegistry)
    FakeRegistry.calls, FakeRegistry.fail_with = [], None
    assert (
        model_fetch.main(["--name", "m", "--alias", "champion", "--dest", str(tmp_path), "--tracking-uri", "http://x"])
        == 0
    )
    assert FakeRegistry.calls == [("m", "7")]
    assert (tmp_path / "served").resolve() == (tmp_path / "m" / "7").resolve()
    # A pinned version (the chart's models[].version) wins over the alias, and the link moves.
    assert (
        model_fetch.main(["--name", "m", "--version", "8", "--dest", str(tmp_path), "--tracking-uri", "http://x"]) == 0
    )
    assert (tmp_path / "served").resolve() == (tmp_path / "m" / "8").resolve()


def test_a_missing_alias_fails_at_once_and_a_down_registry_after_waiting(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("lathe.registry.ModelRegistry", FakeRegistry)
    FakeRegistry.fail_with = AliasNotFoundError("model 'm' has no alias 'gold' (aliases: champion)")
    assert (
        model_fetch.main(["--name", "m", "--alias", "gold", "--dest", str(tmp_path), "--tracking-uri", "http://x"]) == 2
    )
    assert "no alias 'gold'" in capsys.readouterr().err
    FakeRegistry.fail_with = RegistryUnavailableError("model registry at http://x is unreachable")
    args = ["--name", "m", "--dest", str(tmp_path), "--tracking-uri", "http://x", "--wait-s", "0"]
    assert model_fetch.main(args) == 1
    FakeRegistry.fail_with = None


def test_the_inference_services_version_pin_is_the_default_pin(tmp_path, monkeypatch):
    """A canary pod (or any pod with LATHE_INFERENCE_VERSION) fetches that version, not the alias."""
    monkeypatch.setattr("lathe.registry.ModelRegistry", FakeRegistry)
    FakeRegistry.calls, FakeRegistry.fail_with = [], None
    monkeypatch.setenv("LATHE_INFERENCE_VERSION", "9")
    assert model_fetch.main(["--name", "m", "--dest", str(tmp_path), "--tracking-uri", "http://x"]) == 0
    assert FakeRegistry.calls == [("m", "9")]
    assert (tmp_path / "served").resolve() == (tmp_path / "m" / "9").resolve()
