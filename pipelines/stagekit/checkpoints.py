"""Checkpoints: writing one every N steps (and the exported model at the end), resuming from one.

A checkpoint folder holds the trainable weights with the optimiser and schedule state
(``lathe_state.pt``; DeepSpeed writes its own sharded ``state/``), the step it was taken
at (``lathe_checkpoint.json``) and, for the last one, the Hugging Face export (``hf/``).
Writing and reading a folder needs no Ray; ``CheckpointWriter.write`` hands the folder to
Ray Train, which keeps ``checkpoint.keep`` of them under ``checkpoint.storage_path``.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.stagekit.engine import Engine

STATE_FILE = "lathe_state.pt"
META_FILE = "lathe_checkpoint.json"
EXPORT_DIR = "hf"
DS_TAG = "state"


@dataclass
class CheckpointWriter:
    """Writes this worker's part of a checkpoint; rank 0 writes the shared files."""

    engine: Engine
    recipe: Any
    hooks: Any  # the stage's StageHooks (its export)
    payload: dict
    rank: int

    def save(self, folder: Path, step: int, final: bool) -> bool:
        """Write the checkpoint of ``step`` into ``folder``; whether this worker reports it."""
        import torch

        engine = self.engine
        if engine.deepspeed:
            engine.wrapped.save_checkpoint(str(folder), tag=DS_TAG, client_state={"step": step})
        elif self.rank == 0:
            state = {k: v for k, v in engine.raw.state_dict().items() if k in engine.trainable_names}
            torch.save(
                {
                    "model": state,
                    "optimizer": engine.optimizer.state_dict(),
                    "scheduler": engine.scheduler.state_dict(),
                },
                folder / STATE_FILE,
            )
        if final:
            self.export(folder / EXPORT_DIR)
        if self.rank == 0:
            (folder / META_FILE).write_text(json.dumps({"step": step, "final": final}))
        return engine.deepspeed or self.rank == 0

    def export(self, out: Path) -> None:
        """The Hugging Face folder (ZeRO-3 gathers the sharded weights on every rank first)."""
        raw = self.engine.raw
        if self.recipe.scaling.strategy == "deepspeed" and self.recipe.scaling.zero_stage == 3:
            import deepspeed

            with deepspeed.zero.GatheredParameters(list(raw.parameters()), modifier_rank=None):
                if self.rank == 0:
                    self.hooks.export(raw, out, self.recipe, self.payload)
        elif self.rank == 0:
            self.hooks.export(raw, out, self.recipe, self.payload)

    def write(self, step: int, final: bool, metrics: dict[str, float]) -> None:
        """Save, then report the folder with the latest metrics to Ray Train."""
        import ray.train

        with tempfile.TemporaryDirectory(prefix="lathe-ckpt-") as folder:
            reports = self.save(Path(folder), step, final)
            checkpoint = ray.train.Checkpoint.from_directory(folder) if reports else None
            ray.train.report(
                {"step": step, **metrics}, checkpoint=checkpoint, checkpoint_dir_name=f"checkpoint-{step:08d}"
            )


def resume(engine: Engine, folder: Path) -> int:
    """Load a checkpoint folder into the engine; the step it was taken at."""
    import torch

    meta = json.loads((folder / META_FILE).read_text())
    if engine.deepspeed:
        engine.wrapped.load_checkpoint(str(folder), tag=DS_TAG)
    else:
        state = torch.load(folder / STATE_FILE, map_location=engine.device, weights_only=False)
        missing = engine.raw.load_state_dict(state["model"], strict=False).missing_keys
        lost = sorted(set(missing) & engine.trainable_names)
        if lost:
            raise RuntimeError(f"checkpoint lacks trainable weights: {lost[:3]}")
        engine.optimizer.load_state_dict(state["optimizer"])
        engine.scheduler.load_state_dict(state["scheduler"])
    return int(meta["step"])
