"""Stage 2: quality filters with the thresholds of the published heuristics.

Gopher quality and repetition filters (Rae et al. 2021, appendix A) and C4's
document filters (Raffel et al. 2020). Each check returns the name of the rule a
document breaks, so every drop says why. Words are whitespace tokens, except CJK
characters, which count one word each (those scripts do not separate words).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
_WORDS = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")
_ALPHA = re.compile(r"[^\W\d_]")
STOP_WORDS = frozenset(["the", "be", "to", "of", "and", "that", "have", "with"])
BULLETS = ("•", "*", "-", "–", "—", "‣", "◦", "▪")


@dataclass
class QualityThresholds:
    # Gopher quality filter
    min_words: int = 50
    max_words: int = 100_000
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    max_symbol_word_ratio: float = 0.1
    max_bullet_line_fraction: float = 0.9
    max_ellipsis_line_fraction: float = 0.3
    min_alpha_word_fraction: float = 0.8
    min_stop_words: int = 2
    # Gopher repetition filter
    max_duplicate_line_fraction: float = 0.3
    max_duplicate_paragraph_fraction: float = 0.3
    max_duplicate_line_char_fraction: float = 0.2
    max_duplicate_paragraph_char_fraction: float = 0.2
    top_ngram_char_fractions: dict[int, float] = field(default_factory=lambda: {2: 0.20, 3: 0.18, 4: 0.16})
    duplicate_ngram_char_fractions: dict[int, float] = field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
    )
    # C4 document filters
    c4_lorem_ipsum: bool = True
    # C4 also drops any document with "{"; that removes all code, so it is off by default.
    c4_curly_brace: bool = False


def words_of(text: str) -> list[str]:
    return _WORDS.findall(text)


def _is_cjk_heavy(text: str) -> bool:
    cjk = len(re.findall(rf"[{_CJK}]", text))
    return cjk > 0.3 * max(len(text.replace(" ", "")), 1)


def gopher_quality(text: str, words: list[str], t: QualityThresholds) -> str | None:
    n = len(words)
    if n < t.min_words:
        return "gopher_min_words"
    if n > t.max_words:
        return "gopher_max_words"
    cjk = _is_cjk_heavy(text)
    if not cjk:
        mean = sum(len(w) for w in words) / n
        if not t.min_mean_word_length <= mean <= t.max_mean_word_length:
            return "gopher_mean_word_length"
    symbols = text.count("#") + text.count("...") + text.count("…")
    if symbols / n > t.max_symbol_word_ratio:
        return "gopher_symbol_ratio"
    lines = [line for line in text.split("\n") if line.strip()]
    if lines:
        bullets = sum(line.lstrip().startswith(BULLETS) for line in lines)
        if bullets / len(lines) > t.max_bullet_line_fraction:
            return "gopher_bullet_lines"
        ellipsis = sum(line.rstrip().endswith(("...", "…")) for line in lines)
        if ellipsis / len(lines) > t.max_ellipsis_line_fraction:
            return "gopher_ellipsis_lines"
    alpha = sum(1 for w in words if _ALPHA.search(w))
    if alpha / n < t.min_alpha_word_fraction:
        return "gopher_alpha_words"
    if not cjk and t.min_stop_words:
        lowered = {w.lower() for w in words}
        if len(lowered & STOP_WORDS) < t.min_stop_words:
            return "gopher_stop_words"
    return None


def _duplicate_fractions(parts: list[str]) -> tuple[float, float]:
    """Share of parts that repeat an earlier one, and share of characters in them."""
    if not parts:
        return 0.0, 0.0
    seen: set[str] = set()
    dup_count = dup_chars = 0
    for part in parts:
        if part in seen:
            dup_count += 1
            dup_chars += len(part)
        else:
            seen.add(part)
    total_chars = sum(len(p) for p in parts) or 1
    return dup_count / len(parts), dup_chars / total_chars


def gopher_repetition(text: str, words: list[str], t: QualityThresholds) -> str | None:
    lines = [line for line in text.split("\n") if line.strip()]
    paragraphs = [p for p in re.split(r"\n{2,}", text) if p.strip()]
    line_frac, line_chars = _duplicate_fractions(lines)
    if line_frac > t.max_duplicate_line_fraction:
        return "gopher_duplicate_lines"
    para_frac, para_chars = _duplicate_fractions(paragraphs)
    if para_frac > t.max_duplicate_paragraph_fraction:
        return "gopher_duplicate_paragraphs"
    if line_chars > t.max_duplicate_line_char_fraction:
        return "gopher_duplicate_line_chars"
    if para_chars > t.max_duplicate_paragraph_char_fraction:
        return "gopher_duplicate_paragraph_chars"
    lowered = [w.lower() for w in words]
    total = sum(len(w) for w in lowered) or 1
    for n, limit in t.top_ngram_char_fractions.items():
        grams = Counter(tuple(lowered[i : i + n]) for i in range(len(lowered) - n + 1))
        if grams:
            top, count = grams.most_common(1)[0]
            if count > 1 and sum(len(w) for w in top) * count / total > limit:
                return f"gopher_top_{n}gram"
    for n, limit in t.duplicate_ngram_char_fractions.items():
        if _duplicate_ngram_char_fraction(lowered, n) > limit:
            return f"gopher_duplicate_{n}grams"
    return None


def _duplicate_ngram_char_fraction(words: list[str], n: int) -> float:
    """Characters of words covered by n-grams that occur more than once."""
    if len(words) < n:
        return 0.0
    seen: set[tuple[str, ...]] = set()
    covered = [False] * len(words)
    first_positions: dict[tuple[str, ...], int] = {}
    for i in range(len(words) - n + 1):
        gram = tuple(words[i : i + n])
        if gram in seen:
            for j in range(i, i + n):
                covered[j] = True
            start = first_positions[gram]
            for j in range(start, start + n):
                covered[j] = True
        else:
            seen.add(gram)
            first_positions[gram] = i
    total = sum(len(w) for w in words) or 1
    return sum(len(w) for w, c in zip(words, covered, strict=True) if c) / total


def c4_filters(text: str, t: QualityThresholds) -> str | None:
    lowered = text.lower()
    if t.c4_lorem_ipsum and "lorem ipsum" in lowered:
        return "c4_lorem_ipsum"
    if t.c4_curly_brace and "{" in text:
        return "c4_curly_brace"
    return None


def check_quality(text: str, t: QualityThresholds) -> str | None:
    """The first rule the document breaks, or None when it passes them all."""
    words = words_of(text)
    return c4_filters(text, t) or gopher_quality(text, words, t) or gopher_repetition(text, words, t)
