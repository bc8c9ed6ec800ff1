#!/usr/bin/env bash
# GPU pre-training benchmark: the 125M recipe with DeepSpeed ZeRO-2 in bf16 on one GPU,
# a few hundred steps, printing tokens/s and MFU (goal: MFU >= 40 %). At most ~8 minutes.
#
#   bash benchmarks/gpu_pretrain.sh [STEPS]
#
# Needs a CUDA machine with this repository and a Python environment holding Lathe's
# requirements with a CUDA build of torch (`pip install -e . -c requirements/constraints.txt`
# after installing torch for CUDA). It makes its own corpus and tokenizer, so no platform
# or MLflow is needed; Ray starts in-process.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS="${1:-300}"
PY="${PYTHON:-python}"
WORK="$(mktemp -d /tmp/lathe-gpu-bench.XXXX)"
trap 'rm -rf "$WORK"' EXIT

"$PY" - "$WORK" <<'PY'
import sys
from pathlib import Path
sys.path.insert(0, ".")
from benchmarks.training import corpus
from pipelines.tokenizer.config import TokenizerRecipe
from pipelines.tokenizer.train import save, train_tokenizer

work = Path(sys.argv[1])
frame = corpus(limit=400)
(work / "curated").mkdir(parents=True)
frame.to_parquet(work / "curated" / "part-0.parquet")
recipe = TokenizerRecipe.model_validate({"name": "gpu", "data": {"path": str(work / "curated")}, "mlflow": {"enabled": False}})
fast, _ = train_tokenizer(recipe, frame)
save(fast, work / "tokenizer")
PY

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
"$PY" -m pipelines.pretrain --config pipelines/recipes/pretrain-125m-gpu.yaml --json \
  --set data.path="$WORK/curated" --set tokenizer="$WORK/tokenizer" \
  --set scaling.num_workers=1 --set scaling.cpus_per_worker=4 \
  --set training.max_steps="$STEPS" --set training.log_every=20 \
  --set checkpoint.every_steps="$STEPS" --set checkpoint.storage_path="$WORK/ckpt" \
  --set mlflow.enabled=false > "$WORK/summary.json"

"$PY" - "$WORK/summary.json" <<'PY'
import json, sys
summary = json.load(open(sys.argv[1]))
m = summary["metrics"]
print(f"steps {summary['steps']}  tokens/s {m.get('tokens_per_s_mean', m['tokens_per_s']):,.0f}  "
      f"MFU {m['mfu']:.1%}  (goal >= 40 %)  loss {m['loss']:.3f}")
PY
