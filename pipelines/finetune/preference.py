"""How often a model prefers the chosen answer of a preference pair over the rejected one.

The preference is the mean log-probability per answer token (so a longer answer is not
penalised for its length). DPO should raise this share on the pairs it trained on;
``python -m pipelines.finetune.preference MODEL_DIR PAIRS.jsonl`` prints it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def preference_accuracy(model_dir: str | Path, pairs: list[dict], seq_len: int = 256) -> float:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pipelines.finetune.chat import encode_chat, pad
    from pipelines.finetune.stage import sequence_logps

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    wins = 0
    for pair in pairs:
        encoded = [
            encode_chat(tokenizer, [*pair["prompt"], {"role": "assistant", "content": pair[side]}])
            for side in ("chosen", "rejected")
        ]
        rows = pad(encoded, seq_len, pad_id)
        with torch.no_grad():
            total, count = sequence_logps(
                model,
                torch.as_tensor(rows["input_ids"]),
                torch.as_tensor(rows["attention_mask"]),
                torch.as_tensor(rows["labels"]),
            )
        mean = total / count.clamp(min=1)
        wins += int(mean[0] > mean[1])
    return wins / max(len(pairs), 1)


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 2:
        print("usage: python -m pipelines.finetune.preference MODEL_DIR PAIRS.jsonl", file=sys.stderr)
        return 2
    pairs = [json.loads(line) for line in Path(args[1]).read_text().splitlines() if line.strip()]
    print(f"preference accuracy: {preference_accuracy(args[0], pairs):.3f} on {len(pairs)} pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
