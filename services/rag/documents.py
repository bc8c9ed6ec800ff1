"""Read a file's bytes into text sections: PDF, DOCX, HTML, Markdown, reStructuredText, text.

A document becomes a title and a list of ``Section``s (heading path, text, page), so
chunks can carry where they came from. Every parser raises ``DocumentError`` with a
message a user can act on; nothing here touches the network or the disk.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from lathe.errors import InvalidRequestError
from services.rag.markup import clean_markdown, clean_markdown_inline, clean_rst

# Part of every document's hash: raising it re-ingests documents whose parsing changed.
PARSER_VERSION = 3


class DocumentError(InvalidRequestError):
    """A document that cannot be read: unsupported type, corrupt, empty."""

    code = "invalid_document"


@dataclass
class Section:
    heading: str  # "Title > Subsection"; empty before the first heading
    text: str
    page: int | None = None


@dataclass
class ParsedDocument:
    title: str
    format: str
    sections: list[Section] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n\n".join(s.text for s in self.sections)


FORMATS = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".html": "html",
    ".htm": "html",
    ".md": "markdown",
    ".markdown": "markdown",
    ".rst": "rst",
    ".txt": "text",
    ".text": "text",
}


def detect_format(name: str, declared: str | None = None) -> str:
    """The format from a declared one or the file name (``page.rst.txt`` counts as rst)."""
    if declared:
        if declared not in set(FORMATS.values()):
            raise DocumentError(f"unsupported format {declared!r}; use one of {sorted(set(FORMATS.values()))}")
        return declared
    suffixes = [s.lower() for s in PurePosixPath(name).suffixes]
    for suffix in reversed(suffixes):
        if suffix in FORMATS and not (suffix == ".txt" and ".rst" in suffixes):
            return FORMATS[suffix]
    if ".rst" in suffixes:
        return "rst"
    raise DocumentError(f"unsupported file type for {name!r}: supported are {', '.join(sorted(FORMATS))}", param="file")


def parse_document(name: str, data: bytes, declared: str | None = None) -> ParsedDocument:
    fmt = detect_format(name, declared)
    parser = _PARSERS[fmt]
    try:
        document = parser(data)
    except DocumentError:
        raise
    except Exception as exc:  # a parser library's own error: corrupt input
        raise DocumentError(f"cannot read {name!r} as {fmt}: {type(exc).__name__}: {exc}", param="file") from None
    document.sections = [s for s in document.sections if s.text.strip()]
    if not document.sections:
        raise DocumentError(f"{name!r} has no text to index", param="file")
    document.title = document.title or PurePosixPath(name).name
    return document


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DocumentError("text is not valid UTF-8", param="file") from None


def _parse_text(data: bytes) -> ParsedDocument:
    return ParsedDocument("", "text", [Section("", _decode(data))])


_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def _parse_markdown(data: bytes) -> ParsedDocument:
    text = _decode(data)
    sections: list[Section] = []
    path: list[str] = []
    buffer: list[str] = []
    in_fence = False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        match = None if in_fence else _MD_HEADING.match(line)
        if match:
            sections.append(Section(" > ".join(path), clean_markdown("\n".join(buffer))))
            buffer = []
            level = len(match.group(1))
            path = [*path[: level - 1], clean_markdown_inline(match.group(2)).strip()]
        else:
            buffer.append(line)
    sections.append(Section(" > ".join(path), clean_markdown("\n".join(buffer))))
    return ParsedDocument(_first_heading(sections), "markdown", sections)


_RST_UNDERLINE = re.compile(r"^([=\-~^\"'`#*+:.])\1{2,}\s*$")
_RST_ROLE = re.compile(r":[\w:.-]+:`([^`<]*?)\s*(?:<[^>]*>)?`")


def _rst_heading(line: str) -> str:
    """A heading without inline roles: ":mod:`hashlib` --- Hashes" reads "hashlib --- Hashes"."""
    return _RST_ROLE.sub(r"\1", line.strip()).replace("``", "")


def _parse_rst(data: bytes) -> ParsedDocument:
    """Headings by their underline (the order adornments first appear sets the levels)."""
    lines = _decode(data).splitlines()
    sections: list[Section] = []
    levels: list[str] = []
    path: list[str] = []
    buffer: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if (
            line.strip()
            and not _RST_UNDERLINE.match(line)
            and _RST_UNDERLINE.match(nxt)
            and len(nxt.strip()) >= len(line.strip())
        ):
            if buffer and _RST_UNDERLINE.match(buffer[-1]):  # an overline
                buffer.pop()
            adornment = nxt.strip()[0]
            if adornment not in levels:
                levels.append(adornment)
            level = levels.index(adornment) + 1
            sections.append(Section(" > ".join(path), clean_rst("\n".join(buffer))))
            buffer = []
            path = [*path[: level - 1], _rst_heading(line)]
            i += 2
            continue
        buffer.append(line)
        i += 1
    sections.append(Section(" > ".join(path), clean_rst("\n".join(buffer))))
    return ParsedDocument(_first_heading(sections), "rst", sections)


# Page furniture, not content: menus, banners, forms, permalinks (Sphinx's "¶").
_HTML_BOILERPLATE = [
    "script",
    "style",
    "nav",
    "header",
    "footer",
    "noscript",
    "aside",
    "form",
    "button",
    "svg",
    "iframe",
]


def _parse_html(data: bytes) -> ParsedDocument:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(data, "html.parser")
    for tag in soup(_HTML_BOILERPLATE):
        tag.decompose()
    for tag in soup.select('[role="navigation"], [role="banner"], [role="contentinfo"], a.headerlink'):
        tag.decompose()
    title = soup.title.get_text(strip=True) if soup.title else ""
    body = soup.body or soup
    sections: list[Section] = []
    path: list[str] = []
    buffer: list[str] = []
    for element in body.find_all(["h1", "h2", "h3", "h4", "p", "li", "pre", "td", "dd", "dt", "blockquote"]):
        if element.find_parent(["p", "li", "pre", "td", "dd", "blockquote"]) is not None:
            continue  # its text is part of the enclosing block
        text = element.get_text(" ", strip=True)
        if element.name in {"h1", "h2", "h3", "h4"}:
            sections.append(Section(" > ".join(path), "\n".join(buffer)))
            buffer = []
            level = int(element.name[1])
            path = [*path[: level - 1], text]
        elif text:
            buffer.append(text)
    sections.append(Section(" > ".join(path), "\n".join(buffer)))
    return ParsedDocument(title or _first_heading(sections), "html", sections)


def _parse_docx(data: bytes) -> ParsedDocument:
    import docx

    document = docx.Document(io.BytesIO(data))
    sections: list[Section] = []
    path: list[str] = []
    buffer: list[str] = []
    for paragraph in document.paragraphs:
        style = (paragraph.style.name or "") if paragraph.style is not None else ""
        text = paragraph.text.strip()
        if style.startswith("Heading") or style == "Title":
            digits = "".join(ch for ch in style if ch.isdigit())
            level = int(digits) if digits else 1
            sections.append(Section(" > ".join(path), "\n".join(buffer)))
            buffer = []
            path = [*path[: level - 1], text]
        elif text:
            buffer.append(text)
    sections.append(Section(" > ".join(path), "\n".join(buffer)))
    title = document.core_properties.title or _first_heading(sections)
    return ParsedDocument(title, "docx", sections)


def _parse_pdf(data: bytes) -> ParsedDocument:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise DocumentError(f"corrupt or unreadable PDF: {exc}", param="file") from None
    if not reader.pages:
        raise DocumentError("the PDF has no pages", param="file")
    title = ""
    if reader.metadata is not None and reader.metadata.title:
        title = str(reader.metadata.title)
    sections = [Section("", text, page=number) for number, text in enumerate(pages, start=1)]
    return ParsedDocument(title, "pdf", sections)


def _first_heading(sections: list[Section]) -> str:
    for section in sections:
        if section.heading:
            return section.heading.split(" > ")[0]
    return ""


_PARSERS = {
    "pdf": _parse_pdf,
    "docx": _parse_docx,
    "html": _parse_html,
    "markdown": _parse_markdown,
    "rst": _parse_rst,
    "text": _parse_text,
}
