"""Split sections into chunks: sentence windows with overlap, or heading-aware windows.

``sentence`` (the default) packs whole sentences into windows of about ``chunk_words``
words and repeats the last ``overlap_words`` of a window at the start of the next, so
an answer that spans a boundary is still inside one chunk. ``heading`` does the same
within each section and never lets a chunk cross a heading (Markdown, RST, HTML, DOCX).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from services.rag.documents import ParsedDocument, Section

# A sentence ends at . ! ? (optionally closed by quotes or brackets) before whitespace
# and a capital, a digit or an opening mark; or at a blank line.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[A-Z0-9\"'(\[*`])|\n\s*\n")
_SPACE = re.compile(r"[ \t]+")


@dataclass
class Chunk:
    text: str
    section: str
    page: int | None
    index: int = 0


class Chunker(Protocol):
    name: str

    def split(self, document: ParsedDocument) -> list[Chunk]: ...


def split_sentences(text: str) -> list[str]:
    sentences = []
    for piece in _SENTENCE_END.split(text):
        piece = _SPACE.sub(" ", piece).strip()
        if piece:
            sentences.append(piece)
    return sentences


def _windows(sentences: list[tuple[str, Section]], chunk_words: int, overlap_words: int) -> list[Chunk]:
    """Greedy windows of whole sentences; a sentence longer than a window is cut by words."""
    units: list[tuple[str, Section]] = []
    for sentence, section in sentences:
        words = sentence.split()
        for start in range(0, len(words), chunk_words):
            units.append((" ".join(words[start : start + chunk_words]), section))
    chunks: list[Chunk] = []
    window: list[tuple[str, Section]] = []
    size = 0
    i = 0
    while i < len(units):
        text, _ = units[i]
        n = len(text.split())
        if window and size + n > chunk_words:
            chunks.append(_chunk(window))
            # Carry whole trailing sentences up to the overlap into the next window.
            carried: list[tuple[str, Section]] = []
            carried_size = 0
            for unit in reversed(window):
                unit_size = len(unit[0].split())
                if carried_size + unit_size > overlap_words or len(carried) + 1 >= len(window):
                    break
                carried.insert(0, unit)
                carried_size += unit_size
            window, size = carried, carried_size
            continue
        window.append(units[i])
        size += n
        i += 1
    if window:
        chunks.append(_chunk(window))
    for index, chunk in enumerate(chunks):
        chunk.index = index
    return chunks


def _chunk(window: list[tuple[str, Section]]) -> Chunk:
    first = window[0][1]
    return Chunk(" ".join(text for text, _ in window), first.heading, first.page)


class SentenceWindowChunker:
    name = "sentence"

    def __init__(self, chunk_words: int = 160, overlap_words: int = 30) -> None:
        self.chunk_words = chunk_words
        self.overlap_words = overlap_words

    def split(self, document: ParsedDocument) -> list[Chunk]:
        sentences = [(s, section) for section in document.sections for s in split_sentences(section.text)]
        return _windows(sentences, self.chunk_words, self.overlap_words)


class HeadingChunker(SentenceWindowChunker):
    name = "heading"

    def split(self, document: ParsedDocument) -> list[Chunk]:
        chunks: list[Chunk] = []
        for section in document.sections:
            sentences = [(s, section) for s in split_sentences(section.text)]
            chunks += _windows(sentences, self.chunk_words, self.overlap_words)
        for index, chunk in enumerate(chunks):
            chunk.index = index
        return chunks


def make_chunker(name: str, chunk_words: int, overlap_words: int) -> Chunker:
    chunkers = {"sentence": SentenceWindowChunker, "heading": HeadingChunker}
    return chunkers[name](chunk_words, overlap_words)
