"""Stage 1: normalise text — Unicode NFKC, control characters, whitespace, boilerplate lines.

Pure functions over one document; ``normalise_batch`` applies them to a batch.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

# Lines that are site furniture rather than content (the C4 line filters' spirit).
DEFAULT_BOILERPLATE = (
    r"(?i)\bjavascript\b.*\b(enable|disabled|required)\b",
    r"(?i)\b(cookie policy|use of cookies|accept (all )?cookies)\b",
    r"(?i)\b(terms of (use|service)|privacy policy)\b",
    r"(?i)^\s*(copyright|©)\s.*all rights reserved",
    r"(?i)^\s*(share this|subscribe to our newsletter|click here to)\b",
)

_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u3000]+")
_MANY_NEWLINES = re.compile(r"\n{3,}")


def strip_control(text: str) -> str:
    """Drop control characters (category Cc) except newline and tab.

    Format characters (Cf) are kept: the zero-width joiner holds emoji sequences together.
    """
    return "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) != "Cc")


def normalise_text(
    text: str,
    *,
    unicode_form: str | None = "NFKC",
    remove_control: bool = True,
    collapse_whitespace: bool = True,
    boilerplate: Iterable[re.Pattern] = (),
) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if unicode_form:
        text = unicodedata.normalize(unicode_form, text)
    if remove_control:
        text = strip_control(text)
    patterns = list(boilerplate)
    lines = text.split("\n")
    if patterns:
        lines = [line for line in lines if not any(p.search(line) for p in patterns)]
    if collapse_whitespace:
        lines = [_SPACES.sub(" ", line).strip() for line in lines]
        text = _MANY_NEWLINES.sub("\n\n", "\n".join(lines)).strip()
    else:
        text = "\n".join(lines)
    return text


def compile_boilerplate(patterns: Iterable[str]) -> list[re.Pattern]:
    return [re.compile(p) for p in patterns]
