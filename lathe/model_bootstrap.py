"""Register a served model from where its weights live, once, when its alias does not exist yet.

A fresh cluster has an empty MLflow; the chart declares where each served model comes from,
and the vLLM pods' init container (``python -m lathe.model_fetch --source …``) calls
``ensure_registered`` before it downloads. From a shell:

    lathe models bootstrap smollm2-135m-instruct --alias champion \\
        --source hf://HuggingFaceTB/SmolLM2-135M-Instruct@main

Sources:
- ``s3://bucket/prefix``, ``gs://bucket/prefix``, ``file:///path``: any artifact URI MLflow can
  download (S3 through boto3 and the usual AWS credentials; GCS needs google-cloud-storage);
- ``hf://ORG/REPO[@REVISION]``: a Hugging Face repository, with the token in ``HF_TOKEN``;
- a folder path (the chart mounts a PersistentVolumeClaim read-only and names a folder on it).

Idempotent: when the alias already resolves, nothing is downloaded or registered. The
registration itself is ``ModelRegistry.register_folder``, the path `lathe models register` takes.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from lathe.errors import AliasNotFoundError, ConfigError, ModelNotFoundError
from lathe.registry import ModelRegistry, ModelVersionInfo

# Set on a bootstrapped version: where it came from (`lathe models show` lists the tags).
SOURCE_TAG = "lathe.source"
_HF = re.compile(r"^hf://(?P<repo>[\w.\-]+/[\w.\-]+)(?:@(?P<revision>[\w.\-/]+))?$")
_URI_SCHEMES = ("s3://", "gs://", "file://")
# The weights and what tokenizes them; other formats a repository may carry (ONNX, GGUF) are skipped.
_HF_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.jinja", "*.py"]


@dataclass(frozen=True)
class ModelSource:
    """Where a model's weights live: ``kind`` is ``uri``, ``hf`` or ``path``."""

    kind: str
    location: str
    revision: str | None = None


def parse_source(text: str) -> ModelSource:
    """``s3://…``, ``gs://…``, ``file://…``, ``hf://ORG/REPO[@REVISION]`` or an absolute folder path."""
    text = text.strip()
    if text.startswith("hf://"):
        match = _HF.match(text)
        if not match:
            raise ConfigError(
                f"{text!r} is not a Hugging Face source", param="source", hint="write hf://ORG/REPO[@REV]"
            )
        return ModelSource("hf", match["repo"], match["revision"])
    if text.startswith(_URI_SCHEMES):
        if len(text.split("://", 1)[1].strip("/")) == 0:
            raise ConfigError(f"{text!r} names no bucket or folder", param="source")
        return ModelSource("uri", text)
    if text.startswith("/"):
        return ModelSource("path", text)
    raise ConfigError(
        f"{text!r} is not a model source",
        param="source",
        hint="write s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, hf://ORG/REPO[@REVISION] or an absolute folder path",
    )


def materialize(source: ModelSource, workdir: Path) -> Path:
    """Bring the source's files into a local folder (a path source is used where it is)."""
    if source.kind == "path":
        folder = Path(source.location)
        if not folder.is_dir():
            raise ConfigError(f"model source {folder} is not a folder (is the claim mounted?)", param="source")
        return folder
    workdir.mkdir(parents=True, exist_ok=True)
    if source.kind == "hf":
        return _from_hugging_face(source, workdir / "hf")
    import mlflow

    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=source.location, dst_path=str(workdir / "uri"))
    except ImportError as exc:  # gs:// needs google-cloud-storage, s3:// needs boto3
        raise ConfigError(
            f"cannot read {source.location}: {exc.name or exc} is not installed in this image", param="source"
        ) from None
    return Path(local)


def _from_hugging_face(source: ModelSource, dest: Path) -> Path:
    from huggingface_hub import snapshot_download

    # The token comes from HF_TOKEN, which huggingface_hub reads itself (the chart sets it from a Secret).
    local = snapshot_download(
        repo_id=source.location, revision=source.revision, local_dir=str(dest), allow_patterns=_HF_FILES
    )
    return Path(local)


def ensure_registered(
    registry: ModelRegistry, name: str, alias: str, source: str, workdir: Path
) -> tuple[ModelVersionInfo, bool]:
    """The version ``name@alias`` points at, registering it from ``source`` first if the alias is missing.

    Returns ``(version, registered)``; ``registered`` is False when the alias already existed.
    A registry that is down raises ``RegistryUnavailableError`` (the caller retries); the
    source is parsed before the registry is asked, so a typo fails at once.
    """
    parsed = parse_source(source)
    try:
        return registry.resolve(name, alias), False
    except (AliasNotFoundError, ModelNotFoundError):
        pass
    staging = workdir / f".bootstrap-{name}"
    try:
        folder = materialize(parsed, staging)
        info = registry.register_folder(
            folder, name, alias=alias, description=f"registered from {source}", tags={SOURCE_TAG: source}
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return info, True
