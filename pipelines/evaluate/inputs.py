"""What an evaluation reads: held-out texts, questions with answers, and prompts.

Each reader names the recipe field in its one-line error, with the line number.
"""

from __future__ import annotations

import json
from typing import Any

from lathe.errors import ConfigError


def load_texts(path: str, limit: int) -> list[str | list[dict]]:
    """Documents from a .jsonl ("text", or chat "messages") or a .parquet ("text" column)."""
    if path.endswith(".parquet"):
        import pandas as pd

        frame = pd.read_parquet(path)
        if "text" not in frame.columns:
            raise ConfigError(f"perplexity.texts: {path} has no 'text' column", param="perplexity.texts")
        return [str(t) for t in frame["text"].head(limit)]
    docs: list[str | list[dict]] = []
    for number, record in read_jsonl(path, "perplexity.texts"):
        if isinstance(record.get("text"), str):
            docs.append(record["text"])
        elif isinstance(record.get("messages"), list):
            docs.append(record["messages"])
        else:
            raise ConfigError(
                f"perplexity.texts: line {number} of {path} has neither 'text' nor 'messages'",
                param="perplexity.texts",
            )
        if len(docs) >= limit:
            break
    return docs


def load_questions(path: str, limit: int, field: str = "task.questions") -> list[dict[str, Any]]:
    questions = []
    for number, record in read_jsonl(path, field):
        answer = record.get("answer", record.get("answers"))
        valid = isinstance(answer, str) or (isinstance(answer, list) and all(isinstance(a, str) for a in answer))
        if not isinstance(record.get("question"), str) or not valid:
            raise ConfigError(
                f"{field}: line {number} of {path} needs a 'question' string and an 'answer' "
                "(a string or a list of strings)",
                param=field,
            )
        questions.append({"question": record["question"], "answer": answer})
        if len(questions) >= limit:
            break
    return questions


def read_jsonl(path: str, field: str):
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                raise ConfigError(f"{field}: line {number} of {path} is not JSON", param=field) from None
            if not isinstance(record, dict):
                raise ConfigError(f"{field}: line {number} of {path} is not a JSON object", param=field)
            yield number, record


def load_prompts(path: str, limit: int) -> list[str]:
    """The prompts of a .jsonl: each line's "question" (or "prompt") string."""
    prompts = []
    for number, record in read_jsonl(path, "judge.prompts"):
        text = record.get("question", record.get("prompt"))
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(
                f"judge.prompts: line {number} of {path} needs a 'question' (or 'prompt') string",
                param="judge.prompts",
            )
        prompts.append(text)
        if len(prompts) >= limit:
            break
    return prompts


def load_contexts(path: str, limit: int) -> list[str | None]:
    """Each prompt line's sources: its "context" string, or its "sources" strings joined; else None."""
    contexts: list[str | None] = []
    for _, record in read_jsonl(path, "judge.prompts"):
        context = record.get("context")
        sources = record.get("sources")
        if isinstance(sources, list) and all(isinstance(x, str) for x in sources):
            context = "\n\n".join(f"[{i}] {x}" for i, x in enumerate(sources, start=1))
        contexts.append(context if isinstance(context, str) and context.strip() else None)
        if len(contexts) >= limit:
            break
    return contexts
