"""General chat examples mixed into the demo's fine-tuning, so it does not forget what it knew.

Fine-tuning a small model on one narrow task (here: "what does X do?" in the documentation's
words, always under the same system prompt) drifts its answers to everything else: after a
few LoRA steps SmolLM2-135M-Instruct answered "What is the capital of France?" in mangled
French. The usual remedy is replay: mix general conversation into the task data. No chat
dataset can be downloaded here, so the examples are generated from small fact tables:
capitals, chemical symbols, counts, opposites and arithmetic, each a user question (no
system prompt, as people ask) and a one-sentence answer.

Safe behaviour erodes the same way, so the replay also holds the examples of
``pipelines.finetune.safety_chat`` (injections ignored, records and jailbreaks declined).

The facts are disjoint from the no-forgetting suite (``pipelines/evaluate/suites/
knowledge-v1.jsonl``): the suite measures what the model kept, not what it was shown again.
"""

from __future__ import annotations

import hashlib
import json

from pipelines.finetune.safety_chat import safety_examples

CAPITALS = {
    "Italy": "Rome", "Spain": "Madrid", "Portugal": "Lisbon", "the Netherlands": "Amsterdam",
    "Belgium": "Brussels", "Switzerland": "Bern", "Poland": "Warsaw", "Denmark": "Copenhagen",
    "Finland": "Helsinki", "Hungary": "Budapest", "the Czech Republic": "Prague", "Turkey": "Ankara",
    "Kenya": "Nairobi", "Nigeria": "Abuja", "Brazil": "Brasília", "Peru": "Lima", "Chile": "Santiago",
    "Colombia": "Bogotá", "Cuba": "Havana", "South Korea": "Seoul", "Thailand": "Bangkok",
    "Vietnam": "Hanoi", "Indonesia": "Jakarta", "the Philippines": "Manila", "Iran": "Tehran",
    "Saudi Arabia": "Riyadh", "Pakistan": "Islamabad", "Bangladesh": "Dhaka", "New Zealand": "Wellington",
    "Iceland": "Reykjavik", "Ukraine": "Kyiv", "Romania": "Bucharest", "Bulgaria": "Sofia",
    "Serbia": "Belgrade", "Croatia": "Zagreb", "Morocco": "Rabat", "Ethiopia": "Addis Ababa",
    "Venezuela": "Caracas", "Mexico": "Mexico City", "Argentina": "Buenos Aires",
}  # fmt: skip
SYMBOLS = {"oxygen": "O", "iron": "Fe", "silver": "Ag", "sodium": "Na", "carbon": "C", "helium": "He",
           "nitrogen": "N", "copper": "Cu"}  # fmt: skip
COUNTS = [
    ("How many days are in a leap year?", "A leap year has 366 days."),
    ("How many minutes are in an hour?", "An hour has 60 minutes."),
    ("How many seconds are in a minute?", "A minute has 60 seconds."),
    ("How many weeks are in a year?", "A year has 52 weeks."),
    ("How many legs does a dog have?", "A dog has four legs."),
    ("How many wheels does a bicycle have?", "A bicycle has two wheels."),
    ("How many sides does a square have?", "A square has four sides."),
    ("How many planets are in the solar system?", "The solar system has eight planets."),
]
OPPOSITES = {"up": "down", "big": "small", "fast": "slow", "light": "dark", "open": "closed", "early": "late",
             "happy": "sad", "full": "empty"}  # fmt: skip
SUMS = [(3, 4), (5, 6), (7, 8), (12, 9), (15, 15), (20, 22), (9, 9), (31, 11)]
PRODUCTS = [(3, 4), (5, 6), (7, 8), (6, 9), (11, 3), (12, 12), (4, 25), (9, 7)]


def facts() -> list[tuple[str, str]]:
    """Every (question, answer) pair, in a fixed order."""
    pairs = [(f"What is the capital of {c}?", f"The capital of {c} is {city}.") for c, city in CAPITALS.items()]
    pairs += [
        (f"What is the chemical symbol for {e}?", f"The chemical symbol for {e} is {s}.") for e, s in SYMBOLS.items()
    ]
    pairs += COUNTS
    pairs += [(f"What is the opposite of {a}?", f"The opposite of {a} is {b}.") for a, b in OPPOSITES.items()]
    pairs += [(f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}.") for a, b in SUMS]
    pairs += [(f"What is {a} times {b}?", f"{a} times {b} is {a * b}.") for a, b in PRODUCTS]
    return pairs


def general_examples(count: int, seed: int) -> list[dict]:
    """``count`` replay examples: the facts and the safe-behaviour examples of
    ``pipelines.finetune.safety_chat``, in an order a seeded hash gives (the same every run).
    A ``count`` over the pool cycles it, so the replay keeps its share at every data size."""
    pool = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in facts()]
    pool += safety_examples()
    ordered = sorted(pool, key=lambda row: hashlib.sha256(f"{seed}:{json.dumps(row)}".encode()).hexdigest())
    return [ordered[i % len(ordered)] for i in range(max(0, count))]
