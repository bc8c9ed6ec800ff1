"""The SFT label mask, token by token, and packing that keeps examples apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines.finetune.chat import IGNORE, Encoded, encode_chat, pack, pad

REPO = Path(__file__).resolve().parents[3]
SMOLLM2 = REPO / ".lathe" / "assets" / "smollm2-135m-instruct"

CONVERSATION = [
    {"role": "system", "content": "You answer questions about Python."},
    {"role": "user", "content": "What does len() do?"},
    {"role": "assistant", "content": "It returns the number of items."},
    {"role": "user", "content": "And abs()?"},
    {"role": "assistant", "content": "It returns the absolute value."},
]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    if not (SMOLLM2 / "tokenizer.json").exists():
        pytest.fail(f"the bundled model is missing at {SMOLLM2}: run `make install`")
    return AutoTokenizer.from_pretrained(str(SMOLLM2))


def runs(labels: list[int]) -> list[tuple[int, int]]:
    """(start, end) of each stretch of trained tokens."""
    out, start = [], None
    for i, label in enumerate([*labels, IGNORE]):
        if label != IGNORE and start is None:
            start = i
        elif label == IGNORE and start is not None:
            out.append((start, i))
            start = None
    return out


def test_only_assistant_turns_and_their_end_tokens_are_trained(tokenizer):
    encoded = encode_chat(tokenizer, CONVERSATION)
    ids, labels = encoded.input_ids, encoded.labels
    assert ids == tokenizer.apply_chat_template(CONVERSATION, tokenize=True, return_dict=True)["input_ids"]
    # Token by token: a label is either the token itself or ignored.
    assert all(label in (IGNORE, token) for token, label in zip(ids, labels, strict=True))
    stretches = runs(labels)
    assert len(stretches) == 2
    trained = [tokenizer.decode(ids[a:b]) for a, b in stretches]
    assert trained == ["It returns the number of items.<|im_end|>\n", "It returns the absolute value.<|im_end|>\n"]
    for a, _ in stretches:
        # What comes just before each trained stretch is the assistant header, untrained.
        assert tokenizer.decode(ids[a - 4 : a]) == "<|im_start|>assistant\n"
    untrained = tokenizer.decode([t for t, label in zip(ids, labels, strict=True) if label == IGNORE])
    assert "What does len() do?" in untrained and "You answer questions about Python." in untrained
    assert "It returns" not in untrained


def test_the_template_default_system_prompt_is_never_trained(tokenizer):
    encoded = encode_chat(tokenizer, CONVERSATION[1:3])
    trained = tokenizer.decode(
        [t for t, label in zip(encoded.input_ids, encoded.labels, strict=True) if label != IGNORE]
    )
    assert trained == "It returns the number of items.<|im_end|>\n"


def test_packing_keeps_every_example_whole_with_its_own_labels_and_positions(tokenizer):
    examples = [
        encode_chat(tokenizer, CONVERSATION[:3]),
        encode_chat(tokenizer, CONVERSATION),
        Encoded([7] * 5, [7] * 5),
    ]
    seq_len = len(examples[0].input_ids) + len(examples[2].input_ids) + 3
    rows = pack(examples, seq_len, pad_id=0)
    assert rows["input_ids"].shape[1] == seq_len
    first = len(examples[0].input_ids)
    # Row 0: example 0 then (example 1 does not fit) padding; example 1 is cut to seq_len in row 1.
    assert rows["labels"][0, :first].tolist() == examples[0].labels
    assert (rows["labels"][0, first:] == IGNORE).all()
    assert rows["position_ids"][0, :first].tolist() == list(range(first))
    assert rows["position_ids"][0, first] == 0
    assert rows["labels"][1].tolist() == examples[1].labels[:seq_len]
    assert rows["input_ids"][2, :5].tolist() == [7] * 5
    assert rows["position_ids"][2, :5].tolist() == list(range(5))


def test_packed_examples_do_not_attend_to_each_other():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4
    )
    model = LlamaForCausalLM(config).eval()
    # As in training: no KV cache (with one, transformers builds a plain causal mask).
    a, b = [3, 4, 5, 6], [7, 8, 9]
    rows = pack([Encoded(a, a), Encoded(b, b)], seq_len=7, pad_id=0)
    with torch.no_grad():
        packed = model(
            input_ids=torch.as_tensor(rows["input_ids"]),
            position_ids=torch.as_tensor(rows["position_ids"]),
            use_cache=False,
        ).logits[0]
        alone = model(input_ids=torch.as_tensor([b]), use_cache=False).logits[0]
        leaky = model(input_ids=torch.as_tensor(rows["input_ids"]), use_cache=False).logits[0]
    torch.testing.assert_close(packed[4:7], alone, rtol=1e-4, atol=1e-4)
    # Without the restarting position ids the second example would see the first.
    assert not torch.allclose(leaky[4:7], alone, atol=1e-3)


def test_padding_masks_attention_and_labels():
    rows = pad([Encoded([1, 2, 3], [IGNORE, 2, 3])], seq_len=5, pad_id=0, prefix="chosen_")
    assert rows["chosen_input_ids"].tolist() == [[1, 2, 3, 0, 0]]
    assert rows["chosen_attention_mask"].tolist() == [[1, 1, 1, 0, 0]]
    assert rows["chosen_labels"].tolist() == [[IGNORE, 2, 3, IGNORE, IGNORE]]
    assert np.issubdtype(rows["chosen_input_ids"].dtype, np.integer)
