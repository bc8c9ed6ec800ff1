"""A small corpus with every kind of drop the driver decides: exact and near duplicates,
documents that share 13-grams with an evaluation set, a repeated id, and documents other
stages drop first. Built the same way every time (seeded)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from tests.support.corpus import article


def edited(text: str, every: int) -> str:
    words = text.split()
    for j in range(0, len(words), every):
        words[j] = "changed"
    return " ".join(words)


def build(root: Path) -> tuple[Path, Path]:
    """Write ``corpus.jsonl`` and ``eval.jsonl`` under ``root``; their paths."""
    rng = random.Random(11)
    originals = [article(rng, 80) for _ in range(30)]
    rows = [{"id": f"doc{i:02d}", "text": text} for i, text in enumerate(originals)]
    rows += [
        {"id": "copy-of-03", "text": originals[3].upper()},  # exact: case and spacing do not count
        {"id": "copy-of-03-again", "text": "  " + originals[3].replace(" ", "   ")},
        {"id": "copy-of-11", "text": originals[11]},
        {"id": "edit-of-07", "text": edited(originals[7], 25)},  # near: 4 % of the words edited
        {"id": "edit-of-07-more", "text": edited(originals[7], 12)},
        {"id": "edit-of-19", "text": edited(originals[19], 30)},
        {"id": "edit-of-copy-of-11", "text": edited(originals[11], 20)},
        {"id": "short", "text": "too short to keep"},
        {"id": "empty", "text": "   "},
        {"id": "doc05", "text": article(rng, 80)},  # an id seen before, other text
    ]
    eval_rows = [
        {"question": " ".join(originals[22].split()[10:40]), "answer": "x"},
        {"question": " ".join(originals[26].split()[:20]), "answer": "y"},
    ]
    corpus, evals = root / "corpus.jsonl", root / "eval.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    evals.write_text("".join(json.dumps(r) + "\n" for r in eval_rows))
    return corpus, evals


def recipe(root: Path, mode: str) -> dict:
    corpus, evals = build(root)
    return {
        "name": f"small-{mode}",
        "input": {"path": str(corpus)},
        "output": str(root / f"out-{mode}"),
        "batch_size": 16,
        "shards": 1,
        "stages": {
            "quality": {"min_words": 20},
            "decontaminate": {"enabled": True, "eval_sets": [str(evals)], "mode": mode},
        },
        "mlflow": {"enabled": False},
    }
