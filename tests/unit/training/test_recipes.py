"""Every shipped recipe validates; mistakes name the field; the loop's arithmetic."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from lathe.errors import ConfigError
from pipelines.finetune.config import FinetuneRecipe
from pipelines.pretrain.config import PretrainRecipe
from pipelines.stagekit.engine import cosine_lr_lambda
from pipelines.stagekit.recipes import load_recipe
from pipelines.stagekit.train_loop import example_indices
from pipelines.stagekit.training_recipe import LoopSection
from pipelines.tokenizer.config import TokenizerRecipe

REPO = Path(__file__).resolve().parents[3]
RECIPES = REPO / "pipelines" / "recipes"


def recipe_models() -> dict[str, type]:
    from pipelines.evaluate.config import EvaluateRecipe

    return {
        "tokenizer": TokenizerRecipe,
        "pretrain": PretrainRecipe,
        "sft": FinetuneRecipe,
        "dpo": FinetuneRecipe,
        "evaluate": EvaluateRecipe,
    }


def shipped() -> list[Path]:
    return sorted(p for p in RECIPES.glob("*.yaml") if p.name != "curation.yaml")


def test_the_recipes_the_docs_promise_are_shipped():
    names = {p.name for p in shipped()}
    assert {
        "tokenizer.yaml",
        "pretrain-tiny.yaml",
        "pretrain-125m-gpu.yaml",
        "sft-lora-smollm2.yaml",
        "dpo-lora-smollm2.yaml",
        "sft-lora-smollm2-gpu.yaml",
        "dpo-lora-smollm2-gpu.yaml",
        "evaluate.yaml",
    } <= names


@pytest.mark.parametrize("path", shipped(), ids=lambda p: p.name)
def test_every_shipped_recipe_validates(path):
    kind = yaml.safe_load(path.read_text())["kind"]
    recipe = load_recipe(recipe_models()[kind], path)
    assert recipe.kind == kind


def test_the_gpu_recipe_asks_for_deepspeed_zero2_in_bf16():
    recipe = load_recipe(PretrainRecipe, RECIPES / "pretrain-125m-gpu.yaml")
    assert (recipe.scaling.strategy, recipe.scaling.zero_stage, recipe.scaling.precision) == ("deepspeed", 2, "bf16")
    assert recipe.scaling.use_gpu


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


BASE = """
kind: pretrain
name: t
data: {path: /x}
tokenizer: /t
"""


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ("trainig: {max_steps: 3}", "trainig: unknown key"),
        ("training: {micro_batch_size: 0}", "training.micro_batch_size"),
        ("scaling: {strategy: ddp, zero_stage: 3}", "zero_stage applies to strategy: deepspeed"),
        ("scaling: {precision: fp16}", "fp16 needs use_gpu"),
        ("training: {max_steps: 5}\noptimizer: {warmup_steps: 5}", "optimizer.warmup_steps (5) must be below"),
        ("model: {hidden_size: 100, num_heads: 3}", "multiple of num_heads"),
    ],
)
def test_a_mistake_names_its_field(tmp_path, extra, field):
    with pytest.raises(ConfigError) as caught:
        load_recipe(PretrainRecipe, write(tmp_path, BASE + extra))
    assert field in str(caught.value)


def test_dpo_without_lora_is_refused_with_the_fix(tmp_path):
    text = "kind: dpo\nname: d\nbase_model: /m\ndata: {path: /d.jsonl}\nlora: {enabled: false}\n"
    with pytest.raises(ConfigError, match=r"lora\.enabled"):
        load_recipe(FinetuneRecipe, write(tmp_path, text))


def test_overrides_reach_nested_fields_and_are_validated(tmp_path):
    recipe = load_recipe(PretrainRecipe, write(tmp_path, BASE), {"training.max_steps": 7, "scaling.num_workers": 1})
    assert (recipe.training.max_steps, recipe.scaling.num_workers) == (7, 1)
    with pytest.raises(ConfigError, match=r"training\.max_steps"):
        load_recipe(PretrainRecipe, write(tmp_path, BASE), {"training.max_steps": -1})


def test_each_step_sees_its_own_rows_and_an_epoch_sees_every_row():
    loop = LoopSection(micro_batch_size=3, grad_accum_steps=2)
    n, world = 24, 2
    seen = []
    for step in range(2):  # 2 steps x 2 micro x 2 ranks x 3 = 24 rows = one epoch
        for micro in range(loop.grad_accum_steps):
            for rank in range(world):
                rows = example_indices(step, micro, rank, world, loop.micro_batch_size, n, loop.grad_accum_steps, 5)
                assert rows == example_indices(
                    step, micro, rank, world, loop.micro_batch_size, n, loop.grad_accum_steps, 5
                )
                seen += rows
    assert sorted(seen) == list(range(n))
    # The next epoch is shuffled differently.
    assert example_indices(2, 0, 0, world, 3, n, 2, 5) != example_indices(0, 0, 0, world, 3, n, 2, 5)


def test_cosine_schedule_warms_up_then_decays_to_the_floor():
    factor = cosine_lr_lambda(warmup=10, total=110, min_ratio=0.1)
    assert factor(0) == pytest.approx(0.1)
    assert factor(9) == pytest.approx(1.0)
    assert factor(60) == pytest.approx(0.1 + 0.9 * 0.5)
    assert factor(110) == pytest.approx(0.1)
    assert all(factor(s) >= factor(s + 1) for s in range(10, 110))
    assert not math.isnan(factor(500))


def test_a_model_too_large_for_the_workers_is_refused_before_training():
    from transformers import LlamaConfig

    from pipelines.stagekit.sizing import check_batches, check_memory

    recipe = PretrainRecipe.model_validate(
        {"name": "big", "data": {"path": "/x"}, "tokenizer": "/t", "scaling": {"memory_per_worker_gb": 4}}
    )
    config = LlamaConfig(hidden_size=4096, num_hidden_layers=32)
    with pytest.raises(ConfigError, match=r"scaling\.memory_per_worker_gb: the model needs about"):
        check_memory(recipe, 7_000_000_000, 7_000_000_000, config)
    assert check_memory(recipe, 1_000_000, 1_000_000, LlamaConfig(hidden_size=64, num_hidden_layers=2)) < 4
    with pytest.raises(ConfigError, match=r"training\.micro_batch_size: 8 x grad_accum_steps 1 x 2 workers = 16"):
        check_batches(recipe, 10, "rows")


def test_dpo_loss_is_log2_when_policy_equals_reference():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from pipelines.finetune.config import FinetuneRecipe
    from pipelines.finetune.stage import dpo_loss

    class Frozen(torch.nn.Module):
        """A policy whose adapters are off: policy and reference agree."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = LlamaForCausalLM(
                LlamaConfig(
                    vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
                )
            )

        def forward(self, **kwargs):
            return self.inner(**kwargs)

        def disable_adapter(self):
            import contextlib

            return contextlib.nullcontext()

    model = Frozen()
    ids = torch.randint(0, 32, (2, 6))
    batch = {
        "chosen_input_ids": ids,
        "chosen_attention_mask": torch.ones_like(ids),
        "chosen_labels": ids,
        "rejected_input_ids": ids.flip(1),
        "rejected_attention_mask": torch.ones_like(ids),
        "rejected_labels": ids.flip(1),
    }
    recipe = FinetuneRecipe.model_validate({"kind": "dpo", "name": "d", "base_model": "/m", "data": {"path": "/d"}})
    loss, tokens, extras = dpo_loss(model, model, batch, recipe)
    assert float(loss) == pytest.approx(math.log(2), abs=1e-6)
    assert extras["rewards_margin"] == pytest.approx(0.0, abs=1e-6)
    assert tokens == 24


def test_every_stage_takes_set_overrides_and_names_a_bad_field(tmp_path):
    """`lathe train submit RECIPE --set FIELD=VALUE` works for every kind, the tokenizer too."""
    import subprocess
    import sys

    for module, recipe in (("pipelines.tokenizer", "tokenizer.yaml"), ("pipelines.pretrain", "pretrain-tiny.yaml")):
        result = subprocess.run(
            [sys.executable, "-m", module, "--config", str(RECIPES / recipe), "--set", "name=", "--check"],
            capture_output=True, text=True, cwd=tmp_path, timeout=120,
        )  # fmt: skip
        assert result.returncode == 2, (module, result.stderr)
        assert "name" in result.stderr.strip().splitlines()[-1], (module, result.stderr)
