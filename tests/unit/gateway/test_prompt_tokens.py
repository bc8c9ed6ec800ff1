"""Exact prompt counts: the gateway's count of a request equals what transformers (and so vLLM)
makes of it with the bundled SmolLM2's tokenizer and chat template, and where it cannot be
exact it says so (None) rather than guess low."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from lathe.registry import ModelRegistry
from services.gateway.tokens import TOKENIZER_FILES, PromptCounter, VersionTokenizer

REPO = Path(__file__).resolve().parents[3]
SMOLLM2 = REPO / ".lathe" / "assets" / "smollm2-135m-instruct"

CHATS = [
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "You answer in French."}, {"role": "user", "content": "What is 2 + 2?"}],
    [
        {"role": "user", "content": "Résumé of naïve café owners, ünïcödé and emoji 🚀"},
        {"role": "assistant", "content": "Sure."},
        {"role": "user", "content": "Longer, please:\n\n  indented\ttabs"},
    ],
]


@pytest.fixture(scope="module")
def reference():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(SMOLLM2))


@pytest.fixture(scope="module")
def version() -> VersionTokenizer:
    return VersionTokenizer.load(SMOLLM2)


def _ids(encoded) -> list[int]:
    return list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)


@pytest.mark.parametrize("messages", CHATS, ids=["hi", "system", "unicode-multi-turn"])
def test_a_chat_counts_what_transformers_renders_and_encodes(reference, version, messages):
    expected = _ids(reference.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))
    assert version.chat({"messages": messages}) == len(expected)


def test_text_parts_count_as_their_joined_text(reference, version):
    parts = [{"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]}]
    joined = [{"role": "user", "content": "one\ntwo"}]
    expected = _ids(reference.apply_chat_template(joined, add_generation_prompt=True, tokenize=True))
    assert version.chat({"messages": parts}) == len(expected)


def test_a_completion_counts_each_prompt_as_the_tokenizer_does(reference, version):
    prompts = ["The quick brown fox", "def f(x):\n    return x"]
    assert version.completion(prompts) == sum(len(reference(p)["input_ids"]) for p in prompts)


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
        {"messages": [{"role": "user", "content": "Hi"}], "chat_template": "{{ 'x' }}"},
        {"messages": [{"role": "user", "content": "Hi"}], "continue_final_message": True},
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": None}]},
    ],
    ids=["image", "own-template", "continue", "template-refuses"],
)
def test_what_it_cannot_count_exactly_is_left_to_the_byte_bound(version, body):
    assert version.chat(body) is None


def _local_copy(models: Path, version: str) -> None:
    """What an inference service on this machine leaves under LATHE_HOME/models."""
    folder = models / "smollm2-135m-instruct" / version
    folder.mkdir(parents=True)
    for name in TOKENIZER_FILES:
        if (SMOLLM2 / name).is_file():
            shutil.copy(SMOLLM2 / name, folder / name)
    (models / "smollm2-135m-instruct" / f".{version}.complete").write_text("local\n")


def test_the_counter_uses_the_largest_count_of_the_versions_that_may_serve(tmp_path, version):
    _local_copy(tmp_path / "models", "1")
    _local_copy(tmp_path / "models", "2")
    unreachable = ModelRegistry("http://127.0.0.1:9", timeout_s=0.5)
    counter = PromptCounter(unreachable, tmp_path / "tokenizers", models_dir=tmp_path / "models")
    body = {"messages": CHATS[1]}
    counted = asyncio.run(counter.count("smollm2-135m-instruct", ["1", "2"], "chat", body))
    assert counted == version.chat(body)
    # A version with no tokenizer anywhere (not local, registry down): no exact count at all.
    assert asyncio.run(counter.count("smollm2-135m-instruct", ["1", "3"], "chat", body)) is None
    # Not a registry version (a stand-in backend, an outside provider), or a route it does not count.
    assert asyncio.run(counter.count("smollm2-135m-instruct", ["auto"], "chat", body)) is None
    assert asyncio.run(counter.count("smollm2-135m-instruct", ["1"], "embeddings", {"input": "x"})) is None


def test_a_failed_load_is_retried_only_after_the_pause(tmp_path):
    unreachable = ModelRegistry("http://127.0.0.1:9", timeout_s=0.5)
    counter = PromptCounter(unreachable, tmp_path / "tokenizers", models_dir=tmp_path / "models", retry_s=3600)
    body = {"messages": CHATS[0]}
    assert asyncio.run(counter.count("smollm2-135m-instruct", ["1"], "chat", body)) is None
    _local_copy(tmp_path / "models", "1")  # now it could load, but the pause holds
    assert asyncio.run(counter.count("smollm2-135m-instruct", ["1"], "chat", body)) is None
    counter.retry_s = 0
    assert asyncio.run(counter.count("smollm2-135m-instruct", ["1"], "chat", body)) is not None


def test_a_registry_that_does_not_answer_holds_no_request(tmp_path):
    """The request that starts a load waits for it only briefly; the load goes on behind it."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections into its backlog, never answers
    try:
        registry = ModelRegistry(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout_s=1)
        counter = PromptCounter(registry, tmp_path / "tokenizers", models_dir=tmp_path / "models", wait_s=0.2)

        async def ask() -> tuple[int | None, bool]:
            counted = await counter.count("smollm2-135m-instruct", ["7"], "chat", {"messages": CHATS[0]})
            return counted, ("smollm2-135m-instruct", "7") in counter._loading

        counted, still_loading = asyncio.run(ask())
        assert counted is None and still_loading
    finally:
        silent.close()
