"""The evaluation recipe: which model, which held-out text, which questions, where to log.

    recipe = load_recipe(EvaluateRecipe, "pipelines/recipes/evaluate.yaml", {"model": "models:/m/3"})
    preflight(recipe)    # files exist, the model resolves; raises ConfigError naming the field

Shape and ranges are checked by pydantic when the recipe loads; what needs the disk or
the registry is checked by ``preflight`` before any model is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from lathe.errors import ConfigError, LatheError
from lathe.registry import ModelRegistry, ModelVersionInfo, parse_model_uri
from pipelines.evaluate.sections import (
    JudgeSection,
    KnowledgeSection,
    LmEvalSection,
    PerplexitySection,
    SafetySection,
    TaskSection,
)
from pipelines.stagekit.recipes import MlflowSection, Strict


class EvaluateMlflowSection(MlflowSection):
    experiment: str = "lathe-evaluation"

    @model_validator(mode="after")
    def _registers_nothing(self) -> EvaluateMlflowSection:
        if self.register_as or self.alias:
            raise ValueError("evaluation registers no model: remove register_as and alias (the gate moves aliases)")
        return self


class EvaluateRecipe(Strict):
    kind: Literal["evaluate"] = "evaluate"
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][\w.\-]*$")
    # models:/NAME/VERSION, models:/NAME@ALIAS, or a local Hugging Face folder.
    model: str = Field(min_length=1)
    perplexity: PerplexitySection = Field(default_factory=PerplexitySection)
    task: TaskSection = Field(default_factory=TaskSection)
    knowledge: KnowledgeSection = Field(default_factory=KnowledgeSection)
    safety: SafetySection = Field(default_factory=SafetySection)
    lm_eval: LmEvalSection = Field(default_factory=LmEvalSection)
    judge: JudgeSection = Field(default_factory=JudgeSection)
    mlflow: EvaluateMlflowSection = Field(default_factory=EvaluateMlflowSection)

    @field_validator("model")
    @classmethod
    def _model_ref(cls, value: str) -> str:
        if value.startswith("models:/"):
            try:
                parse_model_uri(value)
            except LatheError as exc:
                raise ValueError(exc.one_line()) from None
        return value

    @model_validator(mode="after")
    def _something_to_do(self) -> EvaluateRecipe:
        sections = (self.perplexity, self.task, self.knowledge, self.safety, self.lm_eval, self.judge)
        if not any(section.enabled for section in sections):
            raise ValueError("perplexity, task, knowledge, safety, lm_eval and judge are all off: nothing to evaluate")
        if self.perplexity.enabled and not self.perplexity.texts:
            raise ValueError("perplexity.texts is required while perplexity.enabled is true")
        if self.task.enabled and not self.task.questions:
            raise ValueError("task.questions is required while task.enabled is true")
        return self

    @property
    def is_registered(self) -> bool:
        return self.model.startswith("models:/")


def preflight(recipe: EvaluateRecipe, registry: ModelRegistry | None = None) -> ModelVersionInfo | None:
    """Everything checkable before a model loads; returns the registry version, if the model is one."""
    if recipe.perplexity.enabled:
        _require_file(recipe.perplexity.texts, "perplexity.texts")
    if recipe.task.enabled:
        _require_file(recipe.task.questions, "task.questions")
        if recipe.task.endpoint.serve and not recipe.is_registered:
            raise ConfigError(
                "task.endpoint.serve: serving needs a registered model (models:/NAME/VERSION or models:/NAME@ALIAS)",
                param="task.endpoint.serve",
            )
        if recipe.task.endpoint.model is None and not recipe.is_registered:
            raise ConfigError(
                "task.endpoint.model: required when model is a local folder (the server's name for it)",
                param="task.endpoint.model",
            )
    _check_inputs(recipe)
    if recipe.judge.enabled and not recipe.is_registered:
        raise ConfigError(
            "judge.enabled: comparing with a champion needs a registered model (models:/NAME/VERSION)",
            param="judge.enabled",
        )
    if not recipe.is_registered:
        folder = Path(recipe.model)
        if not (folder / "config.json").is_file():
            raise ConfigError(
                f"model: {folder} is not a Hugging Face model folder (no config.json)",
                param="model",
                hint="give models:/NAME/VERSION, models:/NAME@ALIAS or a folder",
            )
        return None
    if registry is None:
        raise ConfigError(f"model: {recipe.model} needs the registry", param="model")
    return registry.locate(parse_model_uri(recipe.model))


def _check_inputs(recipe: EvaluateRecipe) -> None:
    """The suites, questions and prompts read whole, so a bad line fails before a model loads."""
    from pipelines.evaluate.inputs import load_contexts, load_prompts, load_questions
    from pipelines.evaluate.safety import load_suite

    if recipe.task.enabled:
        load_questions(recipe.task.questions or "", recipe.task.max_questions)
    if recipe.knowledge.enabled:
        _require_file(recipe.knowledge.path, "knowledge.questions")
        load_questions(recipe.knowledge.path, recipe.knowledge.max_questions, "knowledge.questions")
    if recipe.safety.enabled:
        _require_file(recipe.safety.path, "safety.suite")
        load_suite(recipe.safety.path)
    if recipe.judge.enabled:
        _require_file(recipe.judge.prompts, "judge.prompts")
        load_prompts(recipe.judge.prompts or "", recipe.judge.max_prompts)
        contexts = load_contexts(recipe.judge.prompts or "", recipe.judge.max_prompts)
        if "groundedness" in recipe.judge.rubric and not any(contexts):
            raise ConfigError(
                "judge.rubric: groundedness needs prompts with a 'context' (the sources); none has one",
                param="judge.rubric",
            )
    if recipe.lm_eval.enabled:
        from pipelines.evaluate.lmeval import check_tasks

        check_tasks(recipe.lm_eval)


def _require_file(path: str | None, field: str) -> None:
    if path is None or not Path(path).is_file():
        where = Path(path).resolve() if path else "(unset)"
        raise ConfigError(
            f"{field}: no such file {path} ({where})",
            param=field,
            hint="build the demo data with `make demo-data`" if path and ".lathe/data" in path else None,
        )
