"""Recipes: YAML files checked in full before a job starts.

Every stage's recipe is a pydantic model that forbids unknown keys; a mistake stops the
job with the dotted path of the field (``training.micro_batch_size: …``) and, where one
exists, the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lathe.errors import ConfigError

R = TypeVar("R", bound=BaseModel)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MlflowSection(Strict):
    """Where the run is tracked and what it registers."""

    enabled: bool = True
    experiment: str = "lathe-training"
    # Registered model name for the result (none: the run keeps it as an artifact only).
    register_as: str | None = None
    # Alias to point at the new version (the evaluation gate usually moves "champion").
    alias: str | None = None


def describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        path = ".".join(str(p) for p in item["loc"]) or "recipe"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (this recipe has no such setting)"
        parts.append(f"{path}: {message}")
    return "; ".join(parts)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read recipe {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"recipe {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {path} must be a mapping of settings")
    return data


def validate(model: type[R], data: dict[str, Any], source: str | Path) -> R:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"recipe {source}: {describe(exc)}") from None


def load_recipe(model: type[R], path: str | Path, overrides: dict[str, Any] | None = None) -> R:
    """Read ``path``, apply dotted ``overrides`` (``{"training.max_steps": 5}``), validate."""
    data = read_yaml(path)
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return validate(model, data, path)


def positive(default: int, **kwargs: Any) -> Any:
    return Field(default=default, ge=1, **kwargs)
