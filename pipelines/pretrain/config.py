"""The pre-training recipe: a Llama-style decoder trained from scratch."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipelines.stagekit.recipes import Strict
from pipelines.stagekit.text_data import TextData
from pipelines.stagekit.training_recipe import TrainingRecipeBase


class LlamaSection(Strict):
    hidden_size: int = Field(default=128, ge=8, le=65_536)
    num_layers: int = Field(default=2, ge=1, le=512)
    num_heads: int = Field(default=4, ge=1, le=1024)
    num_kv_heads: int | None = Field(default=None, ge=1, le=1024)
    intermediate_size: int = Field(default=512, ge=8, le=262_144)
    rope_theta: float = Field(default=10_000.0, gt=0)
    tie_embeddings: bool = True

    @model_validator(mode="after")
    def _heads(self) -> LlamaSection:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be a multiple of num_heads ({self.num_heads})")
        kv = self.num_kv_heads or self.num_heads
        if self.num_heads % kv:
            raise ValueError(f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({kv})")
        return self


class PretrainRecipe(TrainingRecipeBase):
    kind: Literal["pretrain"] = "pretrain"
    data: TextData
    # A Hugging Face tokenizer folder (the tokenizer stage's output).
    tokenizer: str
    model: LlamaSection = Field(default_factory=LlamaSection)
