"""The SFT and DPO recipes (``kind: sft`` / ``kind: dpo``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipelines.stagekit.recipes import Strict
from pipelines.stagekit.training_recipe import TrainingRecipeBase


class ChatData(Strict):
    # JSON Lines. SFT: {"messages": [{"role", "content"}, ...]}.
    # DPO: {"prompt": [messages], "chosen": "...", "rejected": "..."}.
    path: str
    max_examples: int | None = Field(default=None, ge=1)
    dataset_name: str = "finetune-data"


class LoraSection(Strict):
    # false: full fine-tuning (every weight trains).
    enabled: bool = True
    r: int = Field(default=16, ge=1, le=1024)
    alpha: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    # true: merge the adapters into the weights and register a full model (a new version of
    # mlflow.register_as). false: register the adapter itself (a few MB, ``lathe.format: lora``)
    # under a name of its own, served by vLLM beside its base model (README "LoRA adapters").
    merge: bool = True


class DpoSection(Strict):
    beta: float = Field(default=0.1, gt=0, le=10)


class FinetuneRecipe(TrainingRecipeBase):
    kind: Literal["sft", "dpo"]
    # models:/NAME@ALIAS, models:/NAME/VERSION, or a Hugging Face model folder.
    base_model: str
    data: ChatData
    lora: LoraSection = Field(default_factory=LoraSection)
    # SFT only: several examples per row (labels and attention stay per example).
    packing: bool = True
    dpo: DpoSection = Field(default_factory=DpoSection)

    @model_validator(mode="after")
    def _kind_rules(self) -> FinetuneRecipe:
        if self.kind == "dpo" and not self.lora.enabled:
            raise ValueError("lora.enabled: DPO trains LoRA adapters (the base model is its reference); set true")
        if self.adapter_only:
            self._adapter_rules()
        return self

    @property
    def adapter_only(self) -> bool:
        """The adapter itself is exported and registered, not a merged model."""
        return self.lora.enabled and not self.lora.merge

    def _adapter_rules(self) -> None:
        if not self.base_model.startswith("models:/"):
            raise ValueError(
                "base_model: an adapter (lora.merge: false) is served on its registered base; "
                "name it models:/NAME@ALIAS or models:/NAME/VERSION"
            )
        base_name = self.base_model.removeprefix("models:/").split("@")[0].split("/")[0]
        if self.mlflow.register_as == base_name:
            raise ValueError(
                f"mlflow.register_as: an adapter registers under a name of its own, not its base model's ({base_name})"
            )
