"""Which pipeline stage runs a recipe, and which stages must run before it.

    entry_point_for(Path("pipelines/recipes/pretrain-tiny.yaml"))    # "pipelines.pretrain"
    plan_dependencies(Path("pipelines/recipes/pretrain-tiny.yaml"))  # the tokenizer, when it is missing

A recipe's ``kind`` names its stage; a curation recipe has none (it is known by its
``input`` and ``stages``). ``lathe train submit``, ``lathe data curate`` and the RayJobs
``lathe train submit --k8s`` makes all ask here, so the three agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lathe.errors import ConfigError

# `lathe train submit` runs these kinds.
TRAINING_ENTRY_POINTS = {
    "tokenizer": "pipelines.tokenizer",
    "pretrain": "pipelines.pretrain",
    "sft": "pipelines.finetune",
    "dpo": "pipelines.finetune",
    "evaluate": "pipelines.evaluate",
}
ENTRY_POINTS = {**TRAINING_ENTRY_POINTS, "curation": "pipelines.curation"}
SHIPPED_RECIPES = Path("pipelines") / "recipes"


def read_recipe(path: Path) -> dict[str, Any]:
    """The recipe's top-level mapping (an empty file is an empty mapping)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"recipe {path} is not valid YAML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"recipe {path} cannot be read: {exc}") from None
    return data if isinstance(data, dict) else {}


def recipe_kind(recipe: Path | Mapping[str, Any], *, training_only: bool = False, source: object = None) -> str:
    """The stage kind of a recipe (a path, or its mapping with ``source`` naming it in errors)."""
    data = read_recipe(recipe) if isinstance(recipe, Path) else recipe
    source = recipe if isinstance(recipe, Path) else source or "recipe"
    kind = data.get("kind")
    if kind is None and not training_only and ("stages" in data or "input" in data):
        return "curation"
    if kind not in TRAINING_ENTRY_POINTS:
        raise ConfigError(f"recipe {source}: kind must be one of {', '.join(TRAINING_ENTRY_POINTS)} (got {kind!r})")
    return kind


def entry_point_for(recipe: Path | Mapping[str, Any], *, training_only: bool = False, source: object = None) -> str:
    """The module that runs a recipe: ``python -m <module> --config RECIPE``."""
    return ENTRY_POINTS[recipe_kind(recipe, training_only=training_only, source=source)]


def shipped_recipe(name: str) -> Path:
    """A recipe Lathe ships (``pipelines/recipes/<name>``): from the working directory, else the install."""
    local = SHIPPED_RECIPES / name
    if local.is_file():
        return local
    from importlib.util import find_spec

    spec = find_spec("pipelines")  # finds the package without importing it
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "recipes" / name
        if candidate.is_file():
            return candidate
    return local  # absent: the caller's existence check names it


# -- dependencies ----------------------------------------------------------------------
@dataclass
class PlannedStage:
    """A stage to run before the recipe asked for, and why."""

    kind: str
    recipe: Path
    sets: list[str] = field(default_factory=list)
    reason: str = ""


def effective_value(data: Mapping[str, Any], sets: list[str], dotted: str) -> Any:
    """A recipe field as the job will see it: the file's value, or the last ``--set`` of it."""
    import yaml

    value: Any = data
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
    for pair in sets:
        key, sep, raw = pair.partition("=")
        if sep and key.strip() == dotted:
            value = yaml.safe_load(raw)
    return value


def plan_dependencies(recipe: Path, sets: list[str] = ()) -> list[PlannedStage]:
    """The stages ``recipe`` needs first, in order: today, a pre-training recipe's tokenizer
    (the shipped ``tokenizer.yaml``, writing where the recipe looks) when none is there."""
    data = read_recipe(recipe)
    if recipe_kind(data, source=recipe) != "pretrain":
        return []
    tokenizer = effective_value(data, list(sets), "tokenizer")
    if not tokenizer or (Path(str(tokenizer)).expanduser() / "tokenizer.json").is_file():
        return []
    folder = Path(str(tokenizer)).expanduser().resolve()
    tokenizer_sets = [f"output={folder}"]
    text = effective_value(data, list(sets), "data.path")
    if text:
        tokenizer_sets.append(f"data.path={Path(str(text)).expanduser().resolve()}")
    dataset = effective_value(data, list(sets), "data.dataset_name")
    if dataset:
        tokenizer_sets.append(f"data.dataset_name={dataset}")
    return [
        PlannedStage(
            kind="tokenizer",
            recipe=shipped_recipe("tokenizer.yaml"),
            sets=tokenizer_sets,
            reason=f"no tokenizer in {folder}",
        )
    ]
