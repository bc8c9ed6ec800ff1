"""What each kind of pipeline stage runs, where it writes, and what it hands to later stages.

A recipe stage (curation, tokenizer, pretrain, sft, dpo, evaluate) runs its stage's own
command, ``python -m pipelines.<stage> --config RECIPE --set …``, the one
``lathe train submit`` runs; two stages have no recipe: ``sft-data`` builds the
fine-tuning and evaluation sets from curated pages, and ``gate`` is
``lathe models promote --if-better-than``. Each kind names its outputs, which later
stages reference as ``${stage.output}``:

- ``folder``/``file``: something the stage wrote under the pipeline's storage;
- ``model``: a registry reference (``models:/NAME/VERSION``);
- ``value``: a plain value (an MLflow run id, a decision).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FOLDER, FILE, MODEL, VALUE = "folder", "file", "model", "value"
TRAINING = ("pretrain", "sft", "dpo")


@dataclass(frozen=True)
class Kind:
    name: str
    module: str  # python -m <module>
    outputs: dict[str, str]  # output name -> FOLDER | FILE | MODEL | VALUE
    recipe_model: str | None = None  # "package.module:Class" that validates the recipe; None: no recipe
    output_field: str | None = None  # the recipe field the driver points at the stage's folder
    options: dict[str, str] = field(default_factory=dict)  # recipe-less kinds: set key -> flag
    required: tuple[str, ...] = ()  # recipe-less kinds: set keys without a default
    # Fields the stage reads as local files: a URI there (s3://, gs://, https://) is fetched first.
    inputs: tuple[str, ...] = ()


RUN = {"run": VALUE}
KINDS: dict[str, Kind] = {
    "curation": Kind(
        "curation",
        "pipelines.curation",
        {"dataset": FOLDER, **RUN},
        "pipelines.curation.config:CurationConfig",
        output_field="output",
        inputs=("input.path",),
    ),
    "tokenizer": Kind(
        "tokenizer",
        "pipelines.tokenizer",
        {"tokenizer": FOLDER, **RUN},
        "pipelines.tokenizer.config:TokenizerRecipe",
        output_field="output",
        inputs=("data.path",),
    ),
    **{
        name: Kind(
            name,
            module,
            {"model": MODEL, "checkpoints": VALUE, **RUN},
            model,
            output_field="checkpoint.storage_path",
            inputs=("data.path", "tokenizer"),
        )
        for name, module, model in (
            ("pretrain", "pipelines.pretrain", "pipelines.pretrain.config:PretrainRecipe"),
            ("sft", "pipelines.finetune", "pipelines.finetune.config:FinetuneRecipe"),
            ("dpo", "pipelines.finetune", "pipelines.finetune.config:FinetuneRecipe"),
        )
    },
    "evaluate": Kind(
        "evaluate",
        "pipelines.evaluate",
        {"model": MODEL, **RUN},
        "pipelines.evaluate.config:EvaluateRecipe",
        inputs=("perplexity.texts", "task.questions"),
    ),
    "sft-data": Kind(
        "sft-data",
        "pipelines.finetune.demo_data",
        {"folder": FOLDER, "sft": FILE, "dpo": FILE, "heldout": FILE, "questions": FILE},
        options={
            "input": "--input",
            "max_examples": "--max-examples",
            "seed": "--seed",
            "general_share": "--general-share",
        },
        required=("input",),
        inputs=("input",),
    ),
    "gate": Kind(
        "gate",
        "lathe.cli",
        {"decision": VALUE, "version": VALUE, "run": VALUE},
        # move: false decides and logs the gate but leaves the alias (decision "canary"):
        # a rollout at the gateway moves it. policy: a gate policy file instead of metric/margin.
        options={
            "model": "",
            "against": "--if-better-than",
            "metric": "--metric",
            "margin": "--margin",
            "policy": "--policy",
            "move": "--no-move",
        },
        required=("model",),
    ),
}
# The files sft-data writes, by output name.
SFT_DATA_FILES = {
    "sft": "sft.jsonl",
    "dpo": "dpo.jsonl",
    "heldout": "heldout.jsonl",
    "questions": "eval_questions.jsonl",
}


def recipe_model(kind: Kind) -> type:
    """The pydantic model of a kind's recipe (imported on demand: torch stays unloaded)."""
    from importlib import import_module

    module, _, name = (kind.recipe_model or "").partition(":")
    return getattr(import_module(module), name)


def command(kind: Kind, recipe: str | None, sets: dict[str, Any], folder: str) -> list[str]:
    """The stage's command line (after ``python``), writing into ``folder``."""
    if kind.recipe_model:
        argv = ["-m", kind.module, "--config", str(recipe)]
        sets = {**sets, kind.output_field: folder} if kind.output_field else sets
        for key, value in sets.items():
            argv += ["--set", f"{key}={_scalar(value)}"]
        return argv
    if kind.name == "sft-data":
        argv = ["-m", kind.module, "--out", folder, "--json"]
        for key, flag in kind.options.items():
            if sets.get(key) is not None:
                argv += [flag, str(sets[key])]
        return argv
    name, version = parse_model_ref(str(sets["model"]), "gate.model")
    argv = ["-m", "lathe.cli", "models", "promote", name, "--version", version, "--json"]
    argv += ["--if-better-than", str(sets.get("against") or "champion")]
    for key in ("metric", "margin", "policy"):
        if sets.get(key) is not None:
            argv += [kind.options[key], str(sets[key])]
    if str(sets.get("move", True)).lower() == "false":
        argv.append(kind.options["move"])
    return argv


def _scalar(value: Any) -> str:
    """A value as ``--set`` reads it back (YAML): lists and mappings in flow style."""
    if isinstance(value, str):
        return value
    import json

    return json.dumps(value)


def parse_model_ref(ref: str, field_name: str) -> tuple[str, str]:
    """``models:/NAME/VERSION`` -> (NAME, VERSION)."""
    from lathe.errors import ConfigError

    body = ref.removeprefix("models:/")
    name, _, version = body.rpartition("/")
    if not ref.startswith("models:/") or not name or not version.isdigit():
        raise ConfigError(f"{field_name}: {ref!r} is not a registered version (models:/NAME/VERSION)")
    return name, version


def outputs_of(kind: Kind, payload: Any, folder: str) -> dict[str, str]:
    """The outputs a finished stage hands on, from what it printed (its result or JSON)."""
    if kind.name == "sft-data":
        return {"folder": folder, **{key: f"{folder}/{name}" for key, name in SFT_DATA_FILES.items()}}
    if kind.name == "gate":
        # version: the one the alias holds after the decision (the candidate when promoted).
        out = {"decision": payload.get("decision"), "version": payload.get("version")}
        out["run"] = payload.get("gate_run_id")
        return {key: str(value) for key, value in out.items() if value is not None}
    out = {"run": payload.get("run_id")}
    if kind.name in ("curation", "tokenizer"):
        out["dataset" if kind.name == "curation" else "tokenizer"] = folder
    if payload.get("model_name") and payload.get("model_version"):
        out["model"] = f"models:/{payload['model_name']}/{payload['model_version']}"
    if kind.name in TRAINING:
        out["checkpoints"] = payload.get("checkpoints")
        out.setdefault("model", payload.get("model_path"))
    return {key: value for key, value in out.items() if value is not None}
