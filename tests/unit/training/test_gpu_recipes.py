"""The GPU recipes and their knobs: attention kernel, gradient checkpointing, the pre-flight.

No GPU is needed: the recipes go through the same ``--check`` a user runs, and the
knobs are checked on tiny CPU models built by the stages' own ``build_model``.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from lathe.errors import ConfigError
from pipelines.finetune.config import FinetuneRecipe
from pipelines.pretrain.config import PretrainRecipe
from pipelines.stagekit import model_options
from pipelines.stagekit.recipes import load_recipe

REPO = Path(__file__).resolve().parents[3]
RECIPES = REPO / "pipelines" / "recipes"
SMOLLM2 = REPO / ".lathe" / "assets" / "smollm2-135m-instruct"
GPU_FINETUNE = ["sft-lora-smollm2-gpu.yaml", "dpo-lora-smollm2-gpu.yaml"]


@pytest.mark.parametrize("name", GPU_FINETUNE)
def test_the_gpu_finetune_recipes_ask_for_lora_under_zero2_in_bf16_with_checkpointing(name):
    recipe = load_recipe(FinetuneRecipe, RECIPES / name)
    s = recipe.scaling
    assert (s.use_gpu, s.strategy, s.zero_stage, s.precision) == (True, "deepspeed", 2, "bf16")
    assert 1 <= s.num_workers <= 8  # one node
    assert recipe.lora.enabled and recipe.lora.merge
    assert (recipe.training.gradient_checkpointing, recipe.training.attn_implementation) == (True, "auto")
    # The header shows the command that runs it.
    assert f"lathe train submit pipelines/recipes/{name}" in (RECIPES / name).read_text()


def test_full_fine_tuning_under_zero3_as_the_sft_recipe_documents_validates():
    recipe = load_recipe(
        FinetuneRecipe, RECIPES / "sft-lora-smollm2-gpu.yaml", {"lora.enabled": False, "scaling.zero_stage": 3}
    )
    assert (recipe.lora.enabled, recipe.scaling.zero_stage) == (False, 3)


def chat_data(folder: Path) -> dict[str, Path]:
    """Enough SFT examples and DPO pairs for one step of the recipes as shipped (8 workers)."""
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"What does api_{i}() do?"},
                {"role": "assistant", "content": f"It returns entry {i} of the table, checked and converted."},
            ]
        }
        for i in range(2000)
    ]
    pairs = [{"prompt": r["messages"][:1], "chosen": r["messages"][1]["content"], "rejected": "No."} for r in rows]
    paths = {"sft": folder / "sft.jsonl", "dpo": folder / "dpo.jsonl"}
    paths["sft"].write_text("\n".join(json.dumps(r) for r in rows))
    paths["dpo"].write_text("\n".join(json.dumps(p) for p in pairs[:100]))
    return paths


def check(name: str, data: Path, *sets: str) -> list[str]:
    argv = ["--config", str(RECIPES / name), "--check", "--set", f"base_model={SMOLLM2}", "--set", f"data.path={data}"]
    for pair in ("mlflow.enabled=false", *sets):
        argv += ["--set", pair]
    return argv


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    if not (SMOLLM2 / "config.json").exists():
        pytest.fail(f"the bundled model is missing at {SMOLLM2}: run `make install`")
    return chat_data(tmp_path_factory.mktemp("chat"))


@pytest.mark.parametrize("name", GPU_FINETUNE)
def test_the_gpu_finetune_recipes_pass_the_preflight_on_this_machine(name, data, capsys):
    from pipelines.finetune.__main__ import main

    kind = name.split("-")[0]
    assert main(check(name, data[kind])) == 0, capsys.readouterr().err
    assert "ready to train" in capsys.readouterr().out


def test_flash_attention_2_without_the_package_stops_the_preflight_in_one_line(data, capsys, monkeypatch):
    from pipelines.finetune.__main__ import main

    monkeypatch.setattr(model_options, "flash_attn_installed", lambda: False)
    code = main(check(GPU_FINETUNE[0], data["sft"], "training.attn_implementation=flash_attention_2"))
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("finetune: training.attn_implementation: flash_attention_2 needs")


def test_flash_attention_2_off_gpus_is_refused_naming_the_field():
    cpu_recipe = RECIPES / "sft-lora-smollm2.yaml"
    with pytest.raises(ConfigError, match=r"training\.attn_implementation: flash_attention_2 runs on GPUs"):
        load_recipe(FinetuneRecipe, cpu_recipe, {"training.attn_implementation": "flash_attention_2"})
    with pytest.raises(ConfigError, match=r"training\.attn_implementation"):
        load_recipe(FinetuneRecipe, cpu_recipe, {"training.attn_implementation": "flash"})


@pytest.fixture
def flash_installed(monkeypatch):
    """Make ``flash_attn`` look importable (or not) to ``importlib``, the way the package itself would."""
    real = importlib.util.find_spec

    def install(present: bool) -> None:
        def find_spec(name, *args, **kwargs):
            if name == "flash_attn":
                return importlib.machinery.ModuleSpec("flash_attn", None) if present else None
            return real(name, *args, **kwargs)

        monkeypatch.setattr(importlib.util, "find_spec", find_spec)

    return install


@pytest.mark.parametrize(
    ("requested", "use_gpu", "precision", "installed", "expected"),
    [
        ("auto", True, "bf16", True, "flash_attention_2"),
        ("auto", True, "fp16", True, "flash_attention_2"),
        ("auto", True, "bf16", False, "sdpa"),  # no package
        ("auto", True, "fp32", True, "sdpa"),  # FlashAttention has no fp32 kernel
        ("auto", False, "bf16", True, "sdpa"),  # CPUs
        ("eager", True, "bf16", True, "eager"),
        ("sdpa", True, "bf16", True, "sdpa"),
        ("flash_attention_2", True, "bf16", False, "flash_attention_2"),  # explicit: the pre-flight refuses it
    ],
)
def test_auto_attention_takes_flash_attention_only_where_it_can_run(
    flash_installed, requested, use_gpu, precision, installed, expected
):
    flash_installed(installed)
    assert model_options.flash_attn_installed() is installed
    assert model_options.resolve_attn_implementation(requested, use_gpu, precision) == expected


def test_this_machine_reports_flash_attn_as_it_is():
    assert model_options.flash_attn_installed() == (importlib.util.find_spec("flash_attn") is not None)


def tiny_base(folder: Path) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2
    )
    LlamaForCausalLM(config).save_pretrained(str(folder))
    return folder


def finetune_recipe(**training) -> FinetuneRecipe:
    return FinetuneRecipe.model_validate(
        {"kind": "sft", "name": "t", "base_model": "/m", "data": {"path": "/d"}, "training": training}
    )


@pytest.mark.parametrize("lora", [True, False])
def test_the_knobs_reach_the_finetuned_model_and_adapters_still_learn(tmp_path, lora):
    import torch

    from pipelines.finetune.stage import build_model

    payload = {"base": {"path": str(tiny_base(tmp_path / "base"))}}
    recipe = finetune_recipe(gradient_checkpointing=True, attn_implementation="eager")
    recipe.lora.enabled = lora
    model = build_model(recipe, payload)
    assert model.is_gradient_checkpointing
    assert model.config._attn_implementation == "eager"
    model.train()
    ids = torch.randint(0, 64, (2, 8))
    model(input_ids=ids, labels=ids).loss.backward()
    trained = {name: p for name, p in model.named_parameters() if p.requires_grad}
    assert trained and all(p.grad is not None for p in trained.values())
    # LoRA's B starts at zero, so on the first step only B (and every weight without LoRA) moves.
    moving = [p for name, p in trained.items() if not lora or "lora_B" in name]
    assert moving and all(p.grad.abs().sum() > 0 for p in moving)

    plain = build_model(finetune_recipe(), payload)
    assert not plain.is_gradient_checkpointing
    assert plain.config._attn_implementation == "sdpa"  # auto on CPUs


def tokenizer_folder(folder: Path) -> Path:
    if not (SMOLLM2 / "tokenizer.json").exists():
        pytest.fail(f"the bundled model is missing at {SMOLLM2}: run `make install`")
    folder.mkdir()
    for path in SMOLLM2.glob("*.json"):
        if path.name.startswith(("tokenizer", "special_tokens")):
            shutil.copy(path, folder / path.name)
    return folder


def test_checkpointing_reaches_the_pretrained_model_and_leaves_the_gradients_unchanged(tmp_path):
    import torch

    from pipelines.pretrain.stage import build_model, tokenizer_files

    payload = {"tokenizer_files": tokenizer_files(tokenizer_folder(tmp_path / "tok"))}

    def gradients(checkpointing: bool) -> tuple[bool, list]:
        recipe = PretrainRecipe.model_validate(
            {
                "name": "t",
                "data": {"path": "/x"},
                "tokenizer": "/t",
                "model": {"hidden_size": 16, "num_layers": 2, "num_heads": 2, "intermediate_size": 32},
                "training": {"gradient_checkpointing": checkpointing, "seq_len": 8},
            }
        )
        model = build_model(recipe, payload).train()
        ids = torch.randint(0, 100, (2, 8), generator=torch.Generator().manual_seed(1))
        model(input_ids=ids, labels=ids).loss.backward()
        return model.is_gradient_checkpointing, [p.grad for p in model.parameters()]

    on, with_checkpoints = gradients(True)
    off, without = gradients(False)
    assert (on, off) == (True, False)
    for a, b in zip(with_checkpoints, without, strict=True):
        torch.testing.assert_close(a, b)


def test_checkpointing_lowers_the_activation_estimate_enough_to_fit():
    from transformers import LlamaConfig

    from pipelines.stagekit.sizing import activation_bytes, check_memory

    config = LlamaConfig(hidden_size=2048, num_hidden_layers=24)
    full = activation_bytes(8, 2048, config, checkpointing=False)
    kept = activation_bytes(8, 2048, config, checkpointing=True)
    assert full == 24 * 34 * 8 * 2048 * 2048
    assert kept < full / 5

    def recipe(checkpointing: bool) -> PretrainRecipe:
        return PretrainRecipe.model_validate(
            {
                "name": "t",
                "data": {"path": "/x"},
                "tokenizer": "/t",
                "scaling": {"memory_per_worker_gb": 20, "num_workers": 1},
                "training": {"micro_batch_size": 8, "seq_len": 2048, "gradient_checkpointing": checkpointing},
            }
        )

    with pytest.raises(ConfigError, match=r"set training\.gradient_checkpointing: true"):
        check_memory(recipe(False), 100_000_000, 100_000_000, config)
    assert check_memory(recipe(True), 100_000_000, 100_000_000, config) < 20


def test_the_gpu_benchmark_parses_and_stops_in_one_line_without_a_gpu(tmp_path):
    import os
    import subprocess

    script = REPO / "benchmarks" / "gpu_pretrain.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
    (fake / "nvidia-smi").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(script), "3"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "gpu_pretrain: no GPU visible (nvidia-smi lists none); run this benchmark on a machine with a CUDA GPU"
    ]
    assert done.stdout == ""
