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
    # Merge the adapters into the weights, so vLLM serves a plain model. (Serving unmerged
    # adapters through vLLM's LoRA support is not available yet.)
    merge: bool = True

    @model_validator(mode="after")
    def _merged(self) -> LoraSection:
        if self.enabled and not self.merge:
            raise ValueError("merge: false (adapters served by vLLM's LoRA support) is not available yet; set true")
        return self


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
        return self
