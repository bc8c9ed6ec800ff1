"""A pipeline file: stages in order, each a recipe (or a recipe-less kind) with overrides.

    name: demo
    storage: null            # s3://bucket/prefix, a shared mount (/mnt/lathe), or a local folder
    params: {raw: .lathe/data/demo/raw-docs/docs}
    stages:
      - name: curate
        recipe: pipelines/recipes/curation.yaml
        set: {input.path: "${params.raw}"}
      - name: tokenizer
        recipe: pipelines/recipes/tokenizer.yaml
        set: {data.path: "${curate.dataset}"}

A value may reference ``${params.NAME}`` or an earlier stage's output,
``${STAGE.OUTPUT}`` (the outputs of each kind are listed in ``pipelines.flow.kinds``);
the driver substitutes them when the stage starts. Everything here is checked before
the first stage runs: a reference to a stage that comes later or does not exist, an
output the stage does not have, an unknown key, a recipe field that does not exist.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lathe.errors import ConfigError
from pipelines.flow.kinds import FILE, KINDS, MODEL, SFT_DATA_FILES, Kind

REFERENCE = re.compile(r"\$\{([A-Za-z0-9_-]+)\.([A-Za-z0-9_]+)\}")
NAME = r"^[a-z0-9][a-z0-9-]{0,40}$"


class StageSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME)
    # A recipe file (its kind picks the stage), or a recipe-less kind: sft-data, gate.
    recipe: str | None = None
    kind: str | None = None
    # Recipe fields (dotted) or, for a recipe-less kind, its options.
    set: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_of(self) -> StageSpec:
        if self.recipe is None and self.kind is None:
            raise ValueError("give a recipe (or the kind of a stage without one: sft-data, gate)")
        return self


class PipelineSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME)
    # Where stage outputs and checkpoints go; null: LATHE_PIPELINE_STORAGE, else LATHE_HOME/pipelines.
    storage: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    stages: list[StageSpec] = Field(min_length=1)


def _kind_of(stage: StageSpec, index: int) -> Kind:
    from lathe.recipes import recipe_kind

    if stage.recipe is not None:
        path = Path(stage.recipe)
        if not path.is_file():
            raise ConfigError(f"stages[{index}] {stage.name}: recipe {stage.recipe} does not exist")
        kind = recipe_kind(path)
        if stage.kind is not None and stage.kind != kind:
            raise ConfigError(f"stages[{index}] {stage.name}: kind {stage.kind!r} but the recipe's kind is {kind!r}")
        return KINDS[kind]
    if stage.kind not in KINDS or KINDS[stage.kind].recipe_model:
        recipe_less = [k for k, v in KINDS.items() if not v.recipe_model]
        choices = ", ".join(recipe_less)
        raise ConfigError(f"stages[{index}] {stage.name}: kind must be one of {choices} without a recipe")
    return KINDS[stage.kind]


class Pipeline:
    """A checked pipeline file: its stages with their kinds, overrides applied."""

    def __init__(self, spec: PipelineSpec, source: str) -> None:
        self.spec = spec
        self.source = source
        names = [s.name for s in spec.stages]
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ConfigError(f"pipeline {source}: stage names must be unique ({', '.join(twice)})")
        self.kinds = {s.name: _kind_of(s, i) for i, s in enumerate(spec.stages)}
        self.stages = {s.name: s for s in spec.stages}
        self.order = names
        self._check_references()

    @property
    def name(self) -> str:
        return self.spec.name

    def _check_references(self) -> None:
        for index, stage in enumerate(self.spec.stages):
            earlier = self.order[:index]
            for key, stage_name, output in references(stage.set):
                where = f"stages[{index}] {stage.name}: set.{key}"
                if stage_name == "params":
                    if output not in self.spec.params:
                        raise ConfigError(f"{where}: no params.{output} in the pipeline")
                    continue
                if stage_name not in earlier:
                    later = "a later stage" if stage_name in self.order else "no stage"
                    ref = f"${{{stage_name}.{output}}}"
                    raise ConfigError(f"{where}: {ref} names {later}; only earlier stages' outputs")
                outputs = self.kinds[stage_name].outputs
                if output not in outputs:
                    raise ConfigError(
                        f"{where}: stage {stage_name} ({self.kinds[stage_name].name}) has no output {output!r}; "
                        f"it has {', '.join(outputs)}"
                    )
            kind = self.kinds[stage.name]
            missing = [key for key in kind.required if key not in stage.set]
            unknown = [key for key in stage.set if not kind.recipe_model and key not in kind.options]
            if missing or unknown:
                problem = f"needs set.{missing[0]}" if missing else f"set.{unknown[0]} is not an option of {kind.name}"
                raise ConfigError(f"stages[{index}] {stage.name}: {problem}")

    def select(self, start: str | None, stop: str | None) -> list[str]:
        """The stages from ``start`` to ``stop`` (both included), in order."""
        for flag, value in (("--from", start), ("--to", stop)):
            if value is not None and value not in self.order:
                raise ConfigError(f"{flag} {value}: the pipeline has no such stage ({', '.join(self.order)})")
        first = self.order.index(start) if start else 0
        last = self.order.index(stop) if stop else len(self.order) - 1
        if last < first:
            raise ConfigError(f"--to {stop} comes before --from {start}")
        return self.order[first : last + 1]

    def needed_outputs(self, selected: list[str]) -> set[tuple[str, str]]:
        """(stage, output) pairs the selected stages read from stages outside the selection."""
        needed = set()
        for name in selected:
            for _, stage_name, output in references(self.stages[name].set):
                if stage_name != "params" and stage_name not in selected:
                    needed.add((stage_name, output))
        return needed

    def check_recipes(self) -> None:
        """Every recipe stage's recipe, with its overrides, against its stage's model (references left as text)."""
        from pipelines.flow.kinds import recipe_model
        from pipelines.stagekit.recipes import load_recipe

        for name in self.order:
            kind, stage = self.kinds[name], self.stages[name]
            if not kind.recipe_model:
                continue
            sets = {k: self._placeholder(v) for k, v in stage.set.items()}
            if kind.output_field:
                sets[kind.output_field] = "/placeholder"
            try:
                load_recipe(recipe_model(kind), stage.recipe, sets)
            except ConfigError as exc:
                raise ConfigError(f"stage {name}: {exc.message}") from None

    def _placeholder(self, value: Any) -> Any:
        """A referenced value, for schema checks only: something of the output's shape stands in for it."""
        if isinstance(value, list) and value and all(isinstance(v, str) and "://" in v for v in value):
            return "/ref"  # a list of URIs: the driver fetches them into one folder
        if not isinstance(value, str) or not REFERENCE.search(value):
            return value

        def stand_in(match: re.Match) -> str:
            stage, output = match.group(1), match.group(2)
            if stage == "params":
                return str(self.spec.params.get(output))
            shape = self.kinds[stage].outputs[output]
            return {MODEL: "models:/ref/1", FILE: f"/ref/{SFT_DATA_FILES.get(output, output)}"}.get(shape, "/ref")

        whole = REFERENCE.fullmatch(value)
        if whole and whole.group(1) == "params":
            return self._placeholder(self.spec.params.get(whole.group(2)))
        return REFERENCE.sub(stand_in, value)


def references(sets: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(key, stage, output) for every ``${stage.output}`` in a stage's values."""
    found = []
    for key, value in sets.items():
        for match in REFERENCE.finditer(value if isinstance(value, str) else ""):
            found.append((key, match.group(1), match.group(2)))
    return found


def apply_sets(data: dict[str, Any], pairs: list[str]) -> None:
    """``STAGE.FIELD=VALUE`` or ``params.NAME=VALUE`` overrides, into the raw file's mapping."""
    import yaml

    stages = {s.get("name"): s for s in data.get("stages") or [] if isinstance(s, dict)}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        target, dot, field_name = key.strip().partition(".")
        if not sep or not dot or not field_name:
            raise ConfigError(f"--set {pair!r}: write STAGE.FIELD=VALUE or params.NAME=VALUE", param="set")
        value = yaml.safe_load(raw)
        if target == "params":
            data.setdefault("params", {})[field_name] = value
        elif target in stages:
            stages[target].setdefault("set", {})[field_name] = value
        else:
            raise ConfigError(f"--set {pair!r}: the pipeline has no stage {target!r}", param="set")


def load_pipeline(path: str | Path, sets: list[str] = ()) -> Pipeline:
    """Read, override and check a pipeline file; a ConfigError names the first problem."""
    from pipelines.stagekit.recipes import describe, read_yaml

    data = read_yaml(path)
    apply_sets(data, list(sets))
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"pipeline {path}: {describe(exc)}") from None
    return Pipeline(spec, str(path))
