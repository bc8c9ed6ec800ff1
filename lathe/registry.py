"""The model registry: MLflow is the one hand-over between pipelines and serving.

A registered version is a Hugging Face folder (weights, config, tokenizer) stored as
the artifacts of an MLflow run; an alias (``champion``) names the version to serve.

    registry = ModelRegistry("http://127.0.0.1:5000")
    v = registry.register_folder(Path("out/model"), "my-model", alias="candidate")
    registry.set_alias("my-model", "champion", v.version)
    path = registry.download("my-model", "champion", Path("/tmp/models"))

MLflow is imported on first use (it costs seconds), and every call first checks the
server's health with a short timeout so a registry that is down fails in one line
instead of MLflow's minutes of retries.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from lathe.errors import AliasNotFoundError, InvalidRequestError, ModelNotFoundError, RegistryUnavailableError

MODEL_ARTIFACT_PATH = "model"
FORMAT_TAG = "lathe.format"
# A version's format: a Hugging Face model folder, or a PEFT LoRA adapter served on its base.
MODEL_FORMAT = "hf"
ADAPTER_FORMAT = "lora"
# Written by the training jobs on every version they register; read back by `lathe models show`.
STAGE_TAG = "lathe.stage"
BASE_MODEL_TAG = "lathe.base_model"
RECIPE_TAG = "lathe.recipe"
RECIPE_ARTIFACT_PATH = "recipe"
# Evaluation results on a version: ``lathe.eval.token_f1`` etc. (see ``lathe.promotion``).
EVAL_TAG_PREFIX = "lathe.eval."

_NAME = r"[A-Za-z0-9][\w.\-]*"
_REF = re.compile(rf"^(?P<name>{_NAME})(?:/(?P<version>\d+)|@(?P<alias>[A-Za-z][\w\-]*))?$")


@dataclass(frozen=True)
class ModelRef:
    """A registered model named by version (``name/3``), alias (``name@champion``) or neither (latest)."""

    name: str
    version: str | None = None
    alias: str | None = None

    @property
    def uri(self) -> str:
        if self.version:
            return f"models:/{self.name}/{self.version}"
        if self.alias:
            return f"models:/{self.name}@{self.alias}"
        return f"models:/{self.name}"

    def __str__(self) -> str:
        return self.name + (f"/{self.version}" if self.version else f"@{self.alias}" if self.alias else "")


def parse_model_ref(text: str, *, param: str = "model") -> ModelRef:
    """``models:/a/3``, ``models:/a@champion``, ``a/3``, ``a@champion`` or ``a`` (the latest version)."""
    body = text.strip().removeprefix("models:/")
    match = _REF.match(body)
    if not match:
        raise InvalidRequestError(
            f"{text!r} is not a model reference", param=param, hint="write NAME/VERSION, NAME@ALIAS or NAME"
        )
    return ModelRef(match["name"], match["version"], match["alias"])


def parse_model_uri(uri: str, *, param: str = "model") -> ModelRef:
    """A registry URI proper: ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``."""
    ref = parse_model_ref(uri, param=param) if uri.startswith("models:/") else None
    if ref is None or not (ref.version or ref.alias):
        raise InvalidRequestError(
            f"{uri!r} is not a registry URI", param=param, hint="write models:/NAME/VERSION or models:/NAME@ALIAS"
        )
    return ref


@dataclass(frozen=True)
class ModelVersionInfo:
    name: str
    version: str
    run_id: str | None
    source: str
    aliases: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0

    @property
    def adapter_of(self) -> str | None:
        """``NAME/VERSION`` of the base a LoRA adapter version was trained on; None for a model."""
        if self.tags.get(FORMAT_TAG) != ADAPTER_FORMAT:
            return None
        return self.tags.get(BASE_MODEL_TAG, "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "source": self.source,
            "aliases": list(self.aliases),
            "tags": dict(self.tags),
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class RegisteredModelInfo:
    name: str
    aliases: dict[str, str]
    latest_version: str | None
    description: str = ""


def _is_not_found(exc: Exception) -> bool:
    code = getattr(exc, "error_code", "")
    return code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or "not found" in str(exc).lower()


class ModelRegistry:
    def __init__(self, tracking_uri: str, timeout_s: float = 5.0) -> None:
        self.tracking_uri = tracking_uri.rstrip("/")
        self.timeout_s = timeout_s
        self._client: Any = None

    # -- plumbing -------------------------------------------------------------------
    def ping(self) -> None:
        """Raise ``RegistryUnavailableError`` unless the server answers its health check."""
        if not self.tracking_uri.startswith(("http://", "https://")):
            return  # a file or database store needs no server
        try:
            response = httpx.get(f"{self.tracking_uri}/health", timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            raise RegistryUnavailableError(
                f"model registry at {self.tracking_uri} is unreachable ({type(exc).__name__})",
                hint="start it with `lathe up` or set LATHE_MLFLOW_TRACKING_URI",
            ) from None
        if response.status_code != 200:
            raise RegistryUnavailableError(
                f"model registry at {self.tracking_uri} answered {response.status_code} to its health check"
            )

    @property
    def client(self) -> Any:
        if self._client is None:
            import mlflow
            from mlflow import MlflowClient

            mlflow.set_tracking_uri(self.tracking_uri)
            mlflow.set_registry_uri(self.tracking_uri)
            self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        return self._client

    def _version_info(self, mv: Any) -> ModelVersionInfo:
        return ModelVersionInfo(
            name=mv.name,
            version=str(mv.version),
            run_id=mv.run_id,
            source=mv.source,
            aliases=tuple(getattr(mv, "aliases", []) or []),
            tags=dict(mv.tags or {}),
            created_at=(mv.creation_timestamp or 0) / 1000.0,
        )

    # -- writing --------------------------------------------------------------------
    def register_folder(
        self,
        folder: Path,
        name: str,
        *,
        alias: str | None = None,
        description: str = "",
        tags: dict[str, str] | None = None,
        experiment: str = "lathe-models",
        run_id: str | None = None,
    ) -> ModelVersionInfo:
        """Upload a Hugging Face folder as run artifacts and register it as a new version.

        With ``run_id`` the folder is attached to an existing run (a training run);
        otherwise a short run named ``register-<name>`` is created for it. A PEFT adapter
        folder (``adapter_config.json``) is tagged ``lathe.format: lora``.
        """
        folder = Path(folder)
        fmt = folder_format(folder)
        self.ping()
        import mlflow

        client = self.client
        if run_id is None:
            experiment_id = self._experiment_id(experiment)
            run = client.create_run(experiment_id, run_name=f"register-{name}")
            run_id = run.info.run_id
            owns_run = True
        else:
            owns_run = False
        try:
            client.log_artifacts(run_id, str(folder), artifact_path=MODEL_ARTIFACT_PATH)
            artifact_uri = client.get_run(run_id).info.artifact_uri
            try:
                client.get_registered_model(name)
            except mlflow.exceptions.MlflowException as exc:
                if not _is_not_found(exc):
                    raise
                client.create_registered_model(name, description=description or None)
            all_tags = {FORMAT_TAG: fmt, **(tags or {})}
            mv = client.create_model_version(
                name, source=f"{artifact_uri}/{MODEL_ARTIFACT_PATH}", run_id=run_id, tags=all_tags
            )
            mv = self._wait_ready(name, str(mv.version))
        except BaseException:
            if owns_run:
                client.set_terminated(run_id, status="FAILED")
            raise
        if owns_run:
            client.set_terminated(run_id, status="FINISHED")
        if alias:
            self.set_alias(name, alias, mv.version)
            mv = client.get_model_version(name, mv.version)
        return self._version_info(mv)

    def _experiment_id(self, name: str) -> str:
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        return self.client.create_experiment(name)

    def _wait_ready(self, name: str, version: str, timeout_s: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            mv = self.client.get_model_version(name, version)
            if mv.status != "PENDING_REGISTRATION" or time.monotonic() > deadline:
                return mv
            time.sleep(0.2)

    def set_alias(self, name: str, alias: str, version: str | int) -> ModelVersionInfo:
        self.ping()
        self.get_version(name, str(version))  # names a missing model or version clearly
        self.client.set_registered_model_alias(name, alias, str(version))
        return self.get_version(name, str(version))

    def set_version_tag(self, name: str, version: str | int, key: str, value: str) -> None:
        self.ping()
        self.get_version(name, str(version))
        self.client.set_model_version_tag(name, str(version), key, str(value))

    def delete_alias(self, name: str, alias: str) -> None:
        self.ping()
        self.resolve(name, alias)
        self.client.delete_registered_model_alias(name, alias)

    # -- reading --------------------------------------------------------------------
    def get_version(self, name: str, version: str) -> ModelVersionInfo:
        self.ping()
        import mlflow

        try:
            return self._version_info(self.client.get_model_version(name, str(version)))
        except mlflow.exceptions.MlflowException as exc:
            if not _is_not_found(exc):
                raise
            self._require_model(name)
            raise ModelNotFoundError(f"model {name!r} has no version {version}", param="version") from None

    def resolve(self, name: str, alias: str) -> ModelVersionInfo:
        """The version an alias points at, or ``AliasNotFoundError`` naming what exists."""
        self.ping()
        import mlflow

        try:
            return self._version_info(self.client.get_model_version_by_alias(name, alias))
        except mlflow.exceptions.MlflowException as exc:
            if not _is_not_found(exc):
                raise
            model = self._require_model(name)
            known = ", ".join(sorted(model.aliases)) or "none"
            raise AliasNotFoundError(
                f"model {name!r} has no alias {alias!r} (aliases: {known})", param="alias"
            ) from None

    def _require_model(self, name: str) -> RegisteredModelInfo:
        import mlflow

        try:
            rm = self.client.get_registered_model(name)
        except mlflow.exceptions.MlflowException as exc:
            if not _is_not_found(exc):
                raise
            names = ", ".join(m.name for m in self.list_models()) or "none"
            raise ModelNotFoundError(
                f"no registered model named {name!r} (registered: {names})", param="model"
            ) from None
        return RegisteredModelInfo(name=rm.name, aliases=dict(rm.aliases or {}), latest_version=None)

    def list_models(self) -> list[RegisteredModelInfo]:
        self.ping()
        models = []
        for rm in self.client.search_registered_models(max_results=1000):
            versions = [int(v.version) for v in (rm.latest_versions or [])]
            models.append(
                RegisteredModelInfo(
                    name=rm.name,
                    aliases=dict(rm.aliases or {}),
                    latest_version=str(max(versions)) if versions else None,
                    description=rm.description or "",
                )
            )
        return sorted(models, key=lambda m: m.name)

    def list_versions(self, name: str) -> list[ModelVersionInfo]:
        self._require_model(name)
        found = self.client.search_model_versions(f"name = '{name}'", max_results=1000)
        aliases = self._require_model(name).aliases
        by_version: dict[str, list[str]] = {}
        for alias, version in aliases.items():
            by_version.setdefault(str(version), []).append(alias)
        infos = []
        for mv in found:
            info = self._version_info(mv)
            infos.append(
                ModelVersionInfo(**{**info.__dict__, "aliases": tuple(sorted(by_version.get(info.version, [])))})
            )
        return sorted(infos, key=lambda v: int(v.version))

    def download(self, name: str, version: str, dest_root: Path) -> Path:
        """Download a version's folder once into ``dest_root/<name>/<version>`` and return it."""
        info = self.get_version(name, version)
        target = Path(dest_root) / name / info.version
        marker = target.with_name(f".{info.version}.complete")
        if cached_download(dest_root, name, info.version) is not None:
            return target
        import mlflow

        staging = target.with_name(f".{info.version}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=info.source, dst_path=str(staging), tracking_uri=self.tracking_uri
            )
            local_path = Path(local)
            try:
                folder_format(local_path)
            except InvalidRequestError:
                raise InvalidRequestError(
                    f"{name} version {info.version} is not a Hugging Face model folder nor an adapter"
                ) from None
            shutil.rmtree(target, ignore_errors=True)
            local_path.rename(target)
            marker.write_text(info.source + "\n")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def download_files(self, name: str, version: str, files: Sequence[str], dest_root: Path) -> Path:
        """Those of ``files`` the version holds (e.g. its tokenizer), once, into
        ``dest_root/<name>/<version>``; the folder is returned. Needs ``files[0]``."""
        info = self.get_version(name, version)
        target = Path(dest_root) / name / info.version
        marker = target / ".complete"
        if marker.is_file():
            return target
        import mlflow

        held = {Path(a.path).name for a in mlflow.artifacts.list_artifacts(artifact_uri=info.source,
                                                                           tracking_uri=self.tracking_uri)}  # fmt: skip
        if files[0] not in held:
            raise InvalidRequestError(f"{name} version {info.version} has no {files[0]}")
        target.mkdir(parents=True, exist_ok=True)
        for file in (f for f in files if f in held):
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{info.source}/{file}", dst_path=str(target), tracking_uri=self.tracking_uri
            )
            Path(local).replace(target / file)
        marker.write_text(info.source + "\n")
        return target

    def latest(self, name: str) -> ModelVersionInfo:
        """The highest-numbered version of a model."""
        found = self.list_versions(name)
        if not found:
            raise ModelNotFoundError(f"model {name!r} has no versions", param="model")
        return found[-1]

    def locate(self, ref: ModelRef) -> ModelVersionInfo:
        """The version a reference names: by number, by alias, or the latest."""
        if ref.version:
            return self.get_version(ref.name, ref.version)
        if ref.alias:
            return self.resolve(ref.name, ref.alias)
        return self.latest(ref.name)

    # -- lineage ----------------------------------------------------------------------
    def version_run(self, name: str, version: str) -> dict[str, Any] | None:
        """The run that produced a version: status, metrics, training data and recipe.

        None when the version names no run or the run is gone.
        """
        info = self.get_version(name, version)
        if not info.run_id:
            return None
        import mlflow

        try:
            run = self.client.get_run(info.run_id)
        except mlflow.exceptions.MlflowException as exc:
            if not _is_not_found(exc):
                raise
            return None
        datasets = []
        for item in run.inputs.dataset_inputs if run.inputs else []:
            tags = {t.key: t.value for t in item.tags or []}
            datasets.append(
                {
                    "name": item.dataset.name,
                    "digest": item.dataset.digest,
                    "source": _dataset_source(item.dataset.source),
                    "context": tags.get("mlflow.data.context"),
                }
            )
        try:
            recipes = [f.path for f in self.client.list_artifacts(info.run_id, RECIPE_ARTIFACT_PATH) if not f.is_dir]
        except (mlflow.exceptions.MlflowException, OSError):
            recipes = []  # an artifact store we cannot list does not hide the rest of the lineage
        return {
            "run_id": info.run_id,
            "status": run.info.status,
            "experiment_id": run.info.experiment_id,
            "metrics": dict(run.data.metrics),
            "datasets": datasets,
            "recipe": f"runs:/{info.run_id}/{recipes[0]}" if recipes else None,
        }

    def lineage(self, name: str, version: str, max_depth: int = 5) -> dict[str, Any]:
        """A version, its run, its data, its recipe and evaluation, and its base model's, recursively.

        The base is the ``lathe.base_model`` tag (``name/version``), followed back at most
        ``max_depth`` times; a base outside the registry (a hub id, a path), past the depth
        or gone stays as ``base_ref`` with ``base`` null.
        """
        return self._lineage(name, str(version), max_depth, set())

    def _lineage(self, name: str, version: str, depth: int, seen: set[tuple[str, str]]) -> dict[str, Any]:
        info = self.get_version(name, version)
        seen.add((info.name, info.version))
        run = self.version_run(info.name, info.version) or {}
        base_ref = info.tags.get(BASE_MODEL_TAG)
        base = None
        if base_ref and depth > 0:
            try:
                ref = parse_model_ref(base_ref)
            except InvalidRequestError:
                ref = None
            if ref is not None and ref.version and (ref.name, ref.version) not in seen:
                try:
                    base = self._lineage(ref.name, ref.version, depth - 1, seen)
                except (ModelNotFoundError, AliasNotFoundError):
                    base = None
        recipe = run.get("recipe")
        if recipe is None and info.tags.get(RECIPE_TAG) and info.run_id:
            recipe = f"runs:/{info.run_id}/{RECIPE_ARTIFACT_PATH}/{info.tags[RECIPE_TAG]}"
        return {
            "name": info.name,
            "version": info.version,
            "aliases": list(info.aliases),
            "created_at": info.created_at,
            "run_id": info.run_id,
            "run_status": run.get("status"),
            "stage": info.tags.get(STAGE_TAG),
            "recipe": recipe,
            "datasets": run.get("datasets", []),
            "metrics": run.get("metrics", {}),
            "eval": {k.removeprefix(EVAL_TAG_PREFIX): v for k, v in info.tags.items() if k.startswith(EVAL_TAG_PREFIX)},
            "base_ref": base_ref,
            "base": base,
        }


def folder_format(folder: Path) -> str:
    """``hf`` for a model folder, ``lora`` for a PEFT adapter folder; anything else is refused."""
    if (folder / "config.json").is_file():
        return MODEL_FORMAT
    if (folder / "adapter_config.json").is_file():
        return ADAPTER_FORMAT
    raise InvalidRequestError(f"{folder} is not a model folder (no config.json) nor an adapter folder", param="path")


def cached_download(dest_root: Path, name: str, version: str) -> Path | None:
    """The folder ``download`` left for this version under ``dest_root``, or None; asks no server."""
    target = Path(dest_root) / name / str(version)
    marker = target.with_name(f".{version}.complete")
    return target if marker.exists() and target.is_dir() else None


def _dataset_source(source: str) -> str:
    """MLflow stores a dataset's source as JSON (``{"uri": …}``); show the location itself."""
    import json

    try:
        parsed = json.loads(source)
    except (TypeError, ValueError):
        return source
    if isinstance(parsed, dict):
        for key in ("uri", "url", "path", "table_name"):
            if parsed.get(key):
                return str(parsed[key])
    return source
