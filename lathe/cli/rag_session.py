"""Conversation sessions of ``lathe rag ask --session S``: earlier turns kept on disk.

A session is one JSON file under ``$LATHE_HOME/rag/sessions``, rewritten whole and
atomically after each answered question, so an interrupted ask never leaves half a turn.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from lathe.errors import InvalidRequestError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Turns kept in a session file; the service keeps as many of them as fit its window.
MAX_TURNS = 200


def session_path(home: Path, name: str) -> Path:
    if not _NAME.match(name):
        raise InvalidRequestError(
            f"session name {name!r} must be 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit",
            param="session",
        )
    return home / "rag" / "sessions" / f"{name}.json"


def load_turns(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    try:
        turns = json.loads(path.read_text())["turns"]
    except (ValueError, KeyError, TypeError):
        message = f"{path} is not a session file; remove it or pass --forget"
        raise InvalidRequestError(message, param="session") from None
    return [{"role": t["role"], "content": t["content"]} for t in turns]


def save_turns(path: Path, turns: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps({"turns": turns[-MAX_TURNS:]}, indent=1))
    os.replace(partial, path)


def new_turns(question: str, answer: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
