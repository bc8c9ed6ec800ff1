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


def test_an_adapter_is_fetched_beside_its_model_and_refused_beside_another_version(tmp_path, monkeypatch, capsys):
    """The chart's adapter init containers: ``--adapter-of`` names the served model's link."""
    import json

    from lathe.registry import ModelRegistry

    monkeypatch.chdir(tmp_path)  # the SQLite store keeps artifacts under ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    source = tmp_path / "adapter"
    source.mkdir()
    (source / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "models:/m/1", "r": 8}))
    ModelRegistry(uri).register_folder(source, "docs", alias="champion", tags={"lathe.base_model": "m/1"})
    dest, served = tmp_path / "models", tmp_path / "served"
    for version in ("1", "2"):
        (dest / "m" / version).mkdir(parents=True)
    served.mkdir()
    (served / "model").symlink_to(dest / "m" / "1")
    args = ["--name", "docs", "--alias", "champion", "--dest", str(dest), "--link", str(served / "adapters" / "docs"),
            "--adapter-of", str(served / "model"), "--tracking-uri", uri]  # fmt: skip
    assert model_fetch.main(args) == 0
    assert (served / "adapters" / "docs" / "adapter_config.json").is_file()
    (served / "model").unlink()
    (served / "model").symlink_to(dest / "m" / "2")  # the model moved on; the adapter did not
    assert model_fetch.main(args) == 2
    assert "adapter docs: trained on m/1, but this server serves m/2" in capsys.readouterr().err
