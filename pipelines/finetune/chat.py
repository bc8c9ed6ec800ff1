"""Chat examples as token rows: the assistant-only label mask, packing and padding.

The mask comes from the chat template itself: the text of each assistant turn is the
difference between the conversation rendered up to that turn with the generation
prompt and rendered through it, so whatever the template writes around a turn
(headers, default system prompts) is never trained on, and the turn's end token is.
Token offsets map those character spans to tokens.

Packing puts several examples in one row without splitting any: each example keeps its
own labels, and its position ids restart at 0, which makes the attention of Hugging
Face decoders block-diagonal (an example never attends to the one before it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE = -100


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]


class TemplateError(ValueError):
    pass


def assistant_spans(tokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = len(tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True))
        through = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if not text.startswith(through) or start > len(through):
            raise TemplateError("the chat template renders a conversation differently from its prefixes")
        spans.append((start, len(through)))
    return text, spans


def encode_chat(tokenizer, messages: list[dict]) -> Encoded:
    """Token ids of the rendered conversation, labels only on assistant turns."""
    text, spans = assistant_spans(tokenizer, messages)
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    labels = []
    for token, (begin, end) in zip(encoding["input_ids"], encoding["offset_mapping"], strict=True):
        inside = end > begin and any(s <= begin and end <= e for s, e in spans)
        labels.append(token if inside else IGNORE)
    return Encoded(list(encoding["input_ids"]), labels)


def pack(examples: list[Encoded], seq_len: int, pad_id: int) -> dict[str, np.ndarray]:
    """Rows of ``seq_len`` holding whole examples (longer ones are cut at ``seq_len``)."""
    rows_ids, rows_labels, rows_pos = [], [], []
    ids: list[int] = []
    labels: list[int] = []
    pos: list[int] = []

    def flush() -> None:
        if not ids:
            return
        fill = seq_len - len(ids)
        rows_ids.append(ids + [pad_id] * fill)
        rows_labels.append(labels + [IGNORE] * fill)
        rows_pos.append(pos + list(range(fill)))

    for example in examples:
        e_ids, e_labels = example.input_ids[:seq_len], example.labels[:seq_len]
        if len(ids) + len(e_ids) > seq_len:
            flush()
            ids, labels, pos = [], [], []
        ids = ids + e_ids
        labels = labels + e_labels
        pos = pos + list(range(len(e_ids)))
    flush()
    return {
        "input_ids": np.asarray(rows_ids, dtype=np.int64),
        "labels": np.asarray(rows_labels, dtype=np.int64),
        "position_ids": np.asarray(rows_pos, dtype=np.int64),
    }


def pad(examples: list[Encoded], seq_len: int, pad_id: int, prefix: str = "") -> dict[str, np.ndarray]:
    """One example per row, right-padded, with an attention mask."""
    n = len(examples)
    ids = np.full((n, seq_len), pad_id, dtype=np.int64)
    labels = np.full((n, seq_len), IGNORE, dtype=np.int64)
    mask = np.zeros((n, seq_len), dtype=np.int64)
    for row, example in enumerate(examples):
        length = min(len(example.input_ids), seq_len)
        ids[row, :length] = example.input_ids[:length]
        labels[row, :length] = example.labels[:length]
        mask[row, :length] = 1
    return {f"{prefix}input_ids": ids, f"{prefix}labels": labels, f"{prefix}attention_mask": mask}
