"""Train a byte-level BPE tokenizer on curated text and save it as a Hugging Face tokenizer."""

from __future__ import annotations

import time
from pathlib import Path

from pipelines.tokenizer.config import TokenizerRecipe


def train_tokenizer(recipe: TokenizerRecipe, frame) -> tuple[object, dict]:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = recipe.special_tokens
    special_list = [specials.bos, specials.eos, specials.pad, *specials.extra]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=recipe.vocab_size,
        min_frequency=recipe.min_frequency,
        special_tokens=special_list,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=True,
    )
    started = time.monotonic()
    texts = frame["text"].tolist()
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    seconds = time.monotonic() - started
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=specials.bos,
        eos_token=specials.eos,
        pad_token=specials.pad,
        additional_special_tokens=list(specials.extra),
    )
    fast.chat_template = recipe.template
    sample = texts[: min(len(texts), 200)]
    chars = sum(len(t) for t in sample)
    tokens = sum(len(ids) for ids in fast(sample, add_special_tokens=False)["input_ids"])
    stats = {
        "vocab_size": float(len(fast)),
        "documents": float(len(texts)),
        "chars_per_token": chars / max(tokens, 1),
        "train_seconds": seconds,
    }
    return fast, stats


def save(fast, output: str | Path) -> Path:
    out = Path(output).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out))
    return out
