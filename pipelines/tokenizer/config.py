"""The tokenizer recipe."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipelines.stagekit.recipes import MlflowSection, Strict
from pipelines.stagekit.text_data import TextData

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


class SpecialTokens(Strict):
    bos: str = "<|endoftext|>"
    eos: str = "<|im_end|>"
    pad: str = "<|pad|>"
    extra: list[str] = Field(default_factory=lambda: ["<|im_start|>"])


class TokenizerRecipe(Strict):
    kind: Literal["tokenizer"] = "tokenizer"
    name: str = Field(min_length=1, max_length=100)
    data: TextData
    vocab_size: int = Field(default=8000, ge=300, le=1_000_000)
    min_frequency: int = Field(default=2, ge=1)
    special_tokens: SpecialTokens = Field(default_factory=SpecialTokens)
    # "chatml", or a Jinja template of your own.
    chat_template: str = "chatml"
    output: str = ".lathe/train/tokenizer"
    mlflow: MlflowSection = Field(default_factory=MlflowSection)

    @model_validator(mode="after")
    def _distinct_specials(self) -> TokenizerRecipe:
        tokens = [self.special_tokens.bos, self.special_tokens.eos, self.special_tokens.pad, *self.special_tokens.extra]
        if len(set(tokens)) != len(tokens):
            raise ValueError("special_tokens must all differ")
        return self

    @property
    def template(self) -> str:
        return CHATML if self.chat_template == "chatml" else self.chat_template
