"""Recipe sections every training stage shares: scaling, optimiser, loop, checkpoints.

The checks here are the ones a job would otherwise discover after minutes on a
cluster: batch sizes that cannot be met, a ZeRO stage without DeepSpeed, bf16 asked of
hardware that has none.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pipelines.stagekit.recipes import MlflowSection, Strict


class ScalingSection(Strict):
    """How many Ray Train workers, on what, with which parallelism."""

    num_workers: int = Field(default=2, ge=1, le=4096)
    use_gpu: bool = False
    cpus_per_worker: float = Field(default=1, gt=0, le=512)
    # ddp: PyTorch DistributedDataParallel (gloo on CPU, NCCL on GPU).
    # deepspeed: DeepSpeed ZeRO at `zero_stage` (CPU through DeepSpeed's CPU accelerator).
    strategy: Literal["ddp", "deepspeed"] = "ddp"
    zero_stage: Literal[0, 1, 2, 3] = 2
    # auto: bf16 on GPUs that have it, fp32 elsewhere.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    # Memory one worker may use, for the pre-flight check (default: this machine's RAM
    # shared by the workers, or 80 GiB per GPU).
    memory_per_worker_gb: float | None = Field(default=None, gt=0)
    # Peak dense throughput of one worker in TFLOP/s for the MFU estimate (default:
    # a table of known GPUs, or cores x clock x 32 FLOP/cycle on CPUs).
    peak_tflops_per_worker: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _strategy(self) -> ScalingSection:
        if self.strategy == "ddp" and self.zero_stage not in (0, 2):
            # 2 is the default: only an explicit other stage is a contradiction.
            raise ValueError("zero_stage applies to strategy: deepspeed only (set strategy: deepspeed)")
        if self.precision == "fp16" and not self.use_gpu:
            raise ValueError("precision fp16 needs use_gpu: true (use fp32 or bf16 on CPUs)")
        return self


class OptimizerSection(Strict):
    learning_rate: float = Field(default=3e-4, gt=0, le=1)
    weight_decay: float = Field(default=0.0, ge=0, le=1)
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = Field(default=1e-8, gt=0)
    warmup_steps: int = Field(default=0, ge=0)
    # The cosine schedule decays to learning_rate x min_lr_ratio at max_steps.
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1)
    grad_clip: float = Field(default=1.0, gt=0)


class LoopSection(Strict):
    max_steps: int = Field(default=100, ge=1, le=10_000_000)
    # Sequences per worker per forward pass; the global batch is
    # micro_batch_size x grad_accum_steps x num_workers sequences.
    micro_batch_size: int = Field(default=8, ge=1, le=65_536)
    grad_accum_steps: int = Field(default=1, ge=1, le=4096)
    seq_len: int = Field(default=256, ge=8, le=131_072)
    seed: int = 0
    log_every: int = Field(default=10, ge=1)
    # Keep only each layer's input and recompute the rest in the backward pass: about a
    # third more compute for much less activation memory (longer seq_len, larger batches).
    gradient_checkpointing: bool = False
    # The attention kernel. auto: flash_attention_2 where the flash_attn package is
    # installed and the run uses GPUs in bf16/fp16, else sdpa (PyTorch's fused kernel);
    # eager is the plain reference code.
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = "auto"


class CheckpointSection(Strict):
    every_steps: int = Field(default=50, ge=1)
    # A local folder, or a URI Ray Train can write (s3://, gs://) on a cluster.
    storage_path: str = ".lathe/train"
    keep: int = Field(default=2, ge=1, le=1000)
    # Worker-group restarts Ray Train may make, each resuming from the last checkpoint.
    max_failures: int = Field(default=2, ge=0, le=100)


class TrainingRecipeBase(Strict):
    """The shared part of the pretrain, SFT and DPO recipes."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    scaling: ScalingSection = Field(default_factory=ScalingSection)
    optimizer: OptimizerSection = Field(default_factory=OptimizerSection)
    training: LoopSection = Field(default_factory=LoopSection)
    checkpoint: CheckpointSection = Field(default_factory=CheckpointSection)
    mlflow: MlflowSection = Field(default_factory=MlflowSection)

    @model_validator(mode="after")
    def _warmup_fits(self) -> TrainingRecipeBase:
        if self.optimizer.warmup_steps >= self.training.max_steps:
            raise ValueError(
                f"optimizer.warmup_steps ({self.optimizer.warmup_steps}) must be below "
                f"training.max_steps ({self.training.max_steps})"
            )
        if self.training.attn_implementation == "flash_attention_2" and not (
            self.scaling.use_gpu and self.scaling.precision in ("bf16", "fp16")
        ):
            raise ValueError(
                "training.attn_implementation: flash_attention_2 runs on GPUs in bf16 or fp16 only "
                "(set scaling.use_gpu: true and scaling.precision: bf16, or use auto)"
            )
        return self

    @property
    def global_batch(self) -> int:
        return self.training.micro_batch_size * self.training.grad_accum_steps * self.scaling.num_workers
