"""Reading raw documents: JSONL, Parquet, or a folder of text, Markdown, reST and HTML.

Every record leaves as ``{"id", "text", "source"}``; a record that cannot be read
(bad JSON, not UTF-8, no text) becomes a reject with its reason instead of stopping
the job or vanishing.
"""

from __future__ import annotations

import hashlib
import json
from html.parser import HTMLParser
from pathlib import Path

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst", ".text"}
HTML_SUFFIXES = {".html", ".htm"}


class _TextFromHtml(HTMLParser):
    SKIP = frozenset({"script", "style", "nav", "footer", "header", "noscript"})
    BLOCK = frozenset({"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "pre", "section", "article"})

    VOID = frozenset({"br", "img", "hr", "meta", "link", "input", "wbr", "source", "area", "col", "base"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    # Site furniture marked by role or class (Sphinx, MkDocs and most themes use these).
    SKIP_ROLES = frozenset({"navigation", "search", "banner", "contentinfo"})
    SKIP_CLASSES = frozenset({"related", "sphinxsidebar", "footer", "headerlink", "navbar", "sidebar", "breadcrumbs"})

    def _furniture(self, attrs) -> bool:
        values = dict(attrs)
        classes = set((values.get("class") or "").split())
        return values.get("role") in self.SKIP_ROLES or bool(classes & self.SKIP_CLASSES)

    def handle_starttag(self, tag: str, attrs) -> None:
        if self._skipping:
            if tag not in self.VOID:
                self._skipping += 1
        elif tag in self.SKIP or (tag not in self.VOID and self._furniture(attrs)):
            self._skipping = 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if self._skipping:
            self._skipping -= 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    parser = _TextFromHtml()
    parser.feed(html)
    parser.close()
    return "".join(parser.parts)


def decode(data: bytes) -> str:
    """UTF-8 (with or without BOM) or UTF-16 with a BOM; anything else is refused."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    return data.decode("utf-8-sig")


def file_record(path: str, data: bytes, root: str = "") -> dict:
    """One file's bytes as a record or a reject (``reason`` set)."""
    rel = str(Path(path).relative_to(root)) if root and path.startswith(root) else path
    doc_id = rel
    try:
        text = decode(data)
    except UnicodeDecodeError:
        return {"id": doc_id, "text": "", "source": rel, "reason": "not valid UTF-8 or UTF-16 text"}
    if Path(path).suffix.lower() in HTML_SUFFIXES:
        text = html_to_text(text)
    if not text.strip():
        return {"id": doc_id, "text": "", "source": rel, "reason": "empty document"}
    return {"id": doc_id, "text": text, "source": rel, "reason": None}


def jsonl_record(line: str, line_no: int, source: str, text_field: str, id_field: str) -> dict:
    fallback_id = f"{Path(source).name}:{line_no}"
    try:
        data = json.loads(line)
    except ValueError:
        return {"id": fallback_id, "text": "", "source": source, "reason": "line is not valid JSON"}
    if not isinstance(data, dict):
        return {"id": fallback_id, "text": "", "source": source, "reason": "line is not a JSON object"}
    text = data.get(text_field)
    doc_id = str(data.get(id_field) or fallback_id)
    if not isinstance(text, str):
        return {"id": doc_id, "text": "", "source": source, "reason": f"no string field {text_field!r}"}
    if not text.strip():
        return {"id": doc_id, "text": "", "source": source, "reason": "empty document"}
    return {"id": doc_id, "text": text, "source": source, "reason": None}


def content_id(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:16]
