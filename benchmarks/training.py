"""Training throughput: one process against Ray Train DDP and DeepSpeed ZeRO-2, one run.

    make bench-training

The same tiny Llama (the pretrain-tiny recipe's shape), the same data and the same
per-process batch, three ways:
  (a) one process, a plain PyTorch loop, all the machine's cores as torch threads (and,
      for reference, one thread: what each worker below gets);
  (b) Ray Train, N workers, DDP over gloo, one core each;
  (c) Ray Train, N workers, DeepSpeed ZeRO-2 (its CPU accelerator), one core each.
Throughput is tokens per second in steady state (the first logging window, which pays
for warm-up, is left out). The goal is (b) >= 1.6 x (a). The corpus is the Python
documentation when Debian's python3.11-doc is installed, else standard-library
docstrings; a byte-level BPE tokenizer is trained on it first.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DOCS = Path("/usr/share/doc/python3.11/html/_sources/library")


def corpus(limit: int = 200) -> pd.DataFrame:
    if DOCS.is_dir():
        files = sorted(DOCS.glob("*.txt"))[:limit]
        return pd.DataFrame({"id": [f.name for f in files], "text": [f.read_text() for f in files]})
    import importlib
    import inspect

    rows = []
    for name in ("json", "os", "re", "collections", "itertools", "functools", "pathlib", "argparse", "logging"):
        module = importlib.import_module(name)
        for member_name, member in inspect.getmembers(module):
            doc = inspect.getdoc(member)
            if doc and not member_name.startswith("_"):
                rows.append({"id": f"{name}.{member_name}", "text": doc})
    return pd.DataFrame(rows)


def make_recipe(work: Path, args, strategy: str):
    from pipelines.pretrain.config import PretrainRecipe

    return PretrainRecipe.model_validate(
        {
            "name": f"bench-{strategy}",
            "data": {"path": str(work / "curated")},
            "tokenizer": str(work / "tokenizer"),
            "model": {"hidden_size": 128, "num_layers": 4, "num_heads": 4, "intermediate_size": 512},
            "scaling": {"num_workers": args.workers, "cpus_per_worker": 1, "strategy": strategy, "zero_stage": 2},
            "training": {
                "max_steps": args.steps,
                "micro_batch_size": args.batch,
                "seq_len": args.seq_len,
                "log_every": max(1, args.steps // 6),
            },
            "optimizer": {"learning_rate": 0.002, "warmup_steps": 2},
            "checkpoint": {"every_steps": args.steps, "storage_path": str(work / "ckpt"), "keep": 1},
            "mlflow": {"enabled": False},
        }
    )


def single_process(work: Path, args, threads: int) -> float:
    """(a): the same model and per-process batch in one plain loop."""
    import numpy as np
    import torch

    from pipelines.pretrain.stage import build_model, causal_lm_loss, tokenizer_files
    from pipelines.stagekit.engine import build_optimizer

    recipe = make_recipe(work, args, "ddp")
    torch.set_num_threads(threads)
    rows = np.load(work / "rows.npy")
    model = build_model(recipe, {"tokenizer_files": tokenizer_files(work / "tokenizer")})
    optimizer = build_optimizer([p for p in model.parameters() if p.requires_grad], recipe)
    model.train()
    rng = np.random.default_rng(0)
    warmup = max(1, args.steps // 6)
    tokens, started = 0, 0.0
    for step in range(args.steps):
        if step == warmup:
            tokens, started = 0, time.perf_counter()
        batch = {"input_ids": torch.as_tensor(rows[rng.integers(0, len(rows), args.batch)])}
        loss, n, _ = causal_lm_loss(model, model, batch, recipe)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += n
    return tokens / (time.perf_counter() - started)


def ray_train(work: Path, args, strategy: str) -> float:
    import numpy as np

    from pipelines.pretrain.stage import HOOKS, tokenizer_files
    from pipelines.stagekit.train_runner import StageRun, run_stage

    recipe = make_recipe(work, args, strategy)
    run = StageRun(
        stage="pretrain",
        recipe=recipe,
        recipe_path=work / "recipe.yaml",
        hooks=HOOKS,
        arrays={"input_ids": np.load(work / "rows.npy")},
        payload={"tokenizer_files": tokenizer_files(work / "tokenizer")},
    )
    summary = run_stage(run, tracking_uri=None)
    return summary["metrics"]["tokens_per_s_mean"]


def prepare(work: Path, seq_len: int) -> int:
    import numpy as np

    from pipelines.stagekit.text_data import pack_tokens
    from pipelines.tokenizer.config import TokenizerRecipe
    from pipelines.tokenizer.train import save, train_tokenizer

    frame = corpus()
    (work / "curated").mkdir(parents=True)
    frame.to_parquet(work / "curated" / "part-0.parquet")
    recipe = TokenizerRecipe.model_validate(
        {"name": "bench", "data": {"path": str(work / "curated")}, "vocab_size": 8000, "mlflow": {"enabled": False}}
    )
    fast, _ = train_tokenizer(recipe, frame)
    save(fast, work / "tokenizer")
    ids = fast(frame["text"].tolist(), add_special_tokens=False)["input_ids"]
    rows = pack_tokens(ids, fast.eos_token_id, seq_len)
    np.save(work / "rows.npy", rows)
    return len(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=8, help="sequences per process per step")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")

    import ray

    with tempfile.TemporaryDirectory(prefix="lathe-bench-train-") as tmp:
        work = Path(tmp)
        rows = prepare(work, args.seq_len)
        print(f"corpus: {rows} rows of {args.seq_len} tokens; {args.steps} steps of {args.batch} sequences/process")
        results = {
            "one_process": single_process(work, args, os.cpu_count() or 1),
            "one_process_one_thread": single_process(work, args, 1),
        }
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
        results["ray_ddp"] = ray_train(work, args, "ddp")
        results["ray_deepspeed_zero2"] = ray_train(work, args, "deepspeed")
        ray.shutdown()
    ratios = {
        "ddp_vs_one_process": results["ray_ddp"] / results["one_process"],
        "zero2_vs_one_process": results["ray_deepspeed_zero2"] / results["one_process"],
    }
    if args.json:
        print(json.dumps({"tokens_per_s": results, "ratios": ratios, "workers": args.workers}, indent=2))
        return 0
    print(f"\n{'setup':<34}{'tokens/s':>12}{'vs (a)':>9}")
    labels = {
        "one_process": f"(a) one process, {os.cpu_count()} threads",
        "one_process_one_thread": "    one process, 1 thread",
        "ray_ddp": f"(b) Ray Train DDP, {args.workers} workers",
        "ray_deepspeed_zero2": f"(c) Ray Train ZeRO-2, {args.workers} workers",
    }
    for key, label in labels.items():
        print(f"{label:<34}{results[key]:>12,.0f}{results[key] / results['one_process']:>8.2f}x")
    goal = "met" if ratios["ddp_vs_one_process"] >= 1.6 else "NOT met"
    print(f"\ngoal (b) >= 1.6 x (a): {goal} ({ratios['ddp_vs_one_process']:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
