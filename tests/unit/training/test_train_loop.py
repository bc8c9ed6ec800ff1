"""The training loop's parts without Ray: one step, the throughput window, checkpoints and resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from pipelines.pretrain.config import PretrainRecipe
from pipelines.stagekit.checkpoints import META_FILE, STATE_FILE, CheckpointWriter, resume
from pipelines.stagekit.engine import Engine
from pipelines.stagekit.train_loop import StageHooks, StepResult, ThroughputWindow, train_step


def recipe(**training) -> PretrainRecipe:
    return PretrainRecipe.model_validate(
        {
            "name": "t",
            "data": {"path": "/x"},
            "tokenizer": "/t",
            "training": {"max_steps": 10, "seq_len": 8, **training},
            "optimizer": {"learning_rate": 0.01, "warmup_steps": 1},
        }
    )


def tiny_model(seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    return LlamaForCausalLM(config)


def causal_loss(model, raw, batch, recipe):
    ids = batch["input_ids"]
    return model(input_ids=ids, labels=ids).loss, int(ids.numel()), {"rows": float(ids.shape[0])}


@pytest.fixture
def rows():
    import torch

    torch.manual_seed(1)
    return torch.randint(0, 32, (4, 8))


def test_a_step_accumulates_micro_batches_like_one_large_batch(rows):
    """Two micro-batches of 2 rows give the gradient of one batch of 4 (equal lengths): the norm
    is taken before the optimiser step, so a missing 1/grad_accum_steps would double it."""
    import torch

    whole = Engine.local(tiny_model(), recipe(micro_batch_size=4, grad_accum_steps=1))
    split = Engine.local(tiny_model(), recipe(micro_batch_size=2, grad_accum_steps=2))
    one = train_step(whole, lambda micro: {"input_ids": rows}, causal_loss, recipe(), world=1)
    two = train_step(split, lambda micro: {"input_ids": rows[2 * micro : 2 * micro + 2]}, causal_loss,
                     recipe(micro_batch_size=2, grad_accum_steps=2), world=1)  # fmt: skip
    assert one.tokens == two.tokens == 32
    assert one.loss == pytest.approx(two.loss, rel=1e-5) and one.grad_norm == pytest.approx(two.grad_norm, rel=1e-4)
    assert two.extras == {"rows": 2.0}  # averaged over the micro-batches
    for a, b in zip(whole.raw.parameters(), split.raw.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-4)  # Adam amplifies float noise in gradients near zero
    assert whole.scheduler.last_epoch == split.scheduler.last_epoch == 1  # the schedule stepped once


def test_steps_lower_the_loss(rows):
    engine = Engine.local(tiny_model(), recipe())
    losses = [train_step(engine, lambda micro: {"input_ids": rows}, causal_loss, recipe(), 1).loss for _ in range(8)]
    assert losses[-1] < losses[0]


def test_the_throughput_window_reports_the_steady_mean_after_the_first_window():
    window = ThroughputWindow(world=1, peak_flops=1e9, flops_per_token=1000.0)
    step = StepResult(tokens=100, loss=2.0, grad_norm=0.5, extras={"rewards_margin": 0.25})
    window.add(100)
    first = window.close(step, learning_rate=0.1)
    assert list(first) == ["loss", "learning_rate", "grad_norm", "tokens_per_s", "mfu", "rewards_margin"]
    assert (first["loss"], first["learning_rate"], first["grad_norm"], first["rewards_margin"]) == (2.0, 0.1, 0.5, 0.25)
    assert first["mfu"] == pytest.approx(1000.0 * first["tokens_per_s"] / 1e9)
    window.add(200)
    second = window.close(step, learning_rate=0.1)
    assert second["tokens_per_s_mean"] == pytest.approx(second["tokens_per_s"])
    assert window.tokens == 0 and window.windows == 2


def export_folder(raw, out: Path, recipe, payload) -> None:
    out.mkdir(parents=True)
    (out / "exported.json").write_text(json.dumps(payload))


def test_the_checkpoint_writer_saves_what_resume_restores(rows, tmp_path):
    import torch

    r = recipe()
    engine = Engine.local(tiny_model(), r)
    for _ in range(3):
        train_step(engine, lambda micro: {"input_ids": rows}, causal_loss, r, 1)
    hooks = StageHooks(build_model=None, loss=causal_loss, export=export_folder)
    writer = CheckpointWriter(engine, r, hooks, {"tokenizer": "x"}, rank=0)
    assert writer.save(tmp_path, step=3, final=True) is True
    assert json.loads((tmp_path / META_FILE).read_text()) == {"step": 3, "final": True}
    assert json.loads((tmp_path / "hf" / "exported.json").read_text()) == {"tokenizer": "x"}

    fresh = Engine.local(tiny_model(seed=7), r)
    assert resume(fresh, tmp_path) == 3
    for a, b in zip(engine.raw.parameters(), fresh.raw.parameters(), strict=True):
        assert torch.equal(a, b)
    assert fresh.learning_rate() == engine.learning_rate()
    # The same next step from both: the optimiser's moments came back too.
    after = [train_step(e, lambda micro: {"input_ids": rows}, causal_loss, r, 1).loss for e in (engine, fresh)]
    assert after[0] == pytest.approx(after[1], rel=1e-6)


def test_other_ranks_write_no_shared_files_and_do_not_report(rows, tmp_path):
    r = recipe()
    writer = CheckpointWriter(Engine.local(tiny_model(), r), r, StageHooks(None, causal_loss, export_folder), {}, 1)
    assert writer.save(tmp_path, step=5, final=True) is False
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_without_the_trainable_weights_is_refused(rows, tmp_path):
    import torch

    r = recipe()
    engine = Engine.local(tiny_model(), r)
    CheckpointWriter(engine, r, StageHooks(None, causal_loss, export_folder), {}, 0).save(tmp_path, 2, final=False)
    state = torch.load(tmp_path / STATE_FILE, weights_only=False)
    state["model"].pop("lm_head.weight")
    torch.save(state, tmp_path / STATE_FILE)
    with pytest.raises(RuntimeError, match="checkpoint lacks trainable weights"):
        resume(Engine.local(tiny_model(), r), tmp_path)


def test_dpo_steps_with_lora_prefer_the_chosen_answers_over_the_reference(tmp_path):
    """DPO as the stage runs it (LoRA adapters from the recipe, the reference being the
    model with its adapters off): a few steps make every pair's chosen answer likelier
    against the reference than its rejected one, and merging keeps what was learned."""
    import torch

    from pipelines.finetune.config import FinetuneRecipe
    from pipelines.finetune.stage import build_model, dpo_loss, sequence_logps

    tiny_model().save_pretrained(tmp_path / "base")
    dpo = FinetuneRecipe.model_validate({
        "kind": "dpo", "name": "d", "base_model": str(tmp_path / "base"), "data": {"path": "/d"},
        "training": {"max_steps": 12, "seq_len": 8, "micro_batch_size": 4},
        "optimizer": {"learning_rate": 0.02, "warmup_steps": 1},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
        "dpo": {"beta": 0.5},
    })  # fmt: skip
    model = build_model(dpo, {"base": {"path": str(tmp_path / "base")}})
    torch.manual_seed(3)
    chosen, rejected = torch.randint(0, 32, (4, 8)), torch.randint(0, 32, (4, 8))
    ones = torch.ones_like(chosen)
    batch = {"chosen_input_ids": chosen, "chosen_attention_mask": ones, "chosen_labels": chosen,
             "rejected_input_ids": rejected, "rejected_attention_mask": ones, "rejected_labels": rejected}  # fmt: skip

    engine = Engine.local(model, dpo)
    steps = [train_step(engine, lambda micro: batch, dpo_loss, dpo, world=1) for _ in range(12)]
    assert steps[0].loss == pytest.approx(math.log(2), abs=1e-4)  # adapters start as a no-op
    with torch.no_grad():
        loss, _, extras = dpo_loss(model, model, batch, dpo)
    assert float(loss) < steps[0].loss - 0.1 and extras["rewards_accuracy"] == 1.0 and extras["rewards_margin"] > 0
    assert all(not p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)  # adapters alone

    def margins(m) -> torch.Tensor:  # log p(chosen) - log p(rejected), per pair
        with torch.no_grad():
            logps, _ = sequence_logps(m, torch.cat([chosen, rejected]), torch.cat([ones, ones]),
                                      torch.cat([chosen, rejected]))  # fmt: skip
        return logps[:4] - logps[4:]

    merged = model.merge_and_unload()  # what `lora.merge: true` registers
    assert bool((margins(merged) > margins(tiny_model())).all())  # tiny_model(): the base weights again
