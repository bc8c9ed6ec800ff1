"""Parsing each supported format into titled sections, and refusing what cannot be read."""

from __future__ import annotations

import io
import itertools

import pytest

from services.rag.chunking import HeadingChunker, SentenceWindowChunker, split_sentences
from services.rag.documents import DocumentError, ParsedDocument, Section, detect_format, parse_document

MARKDOWN = b"""# Paths

Intro line.

## Joining

Use os.path.join to join parts.

```
# not a heading inside a fence
```

## Splitting

os.path.split returns head and tail.
"""

RST = b"""=====
Paths
=====

Intro line.

Joining
-------

Use os.path.join to join parts.

Details
~~~~~~~

It inserts separators.

Splitting
---------

os.path.split returns head and tail.
"""


def test_markdown_sections_carry_their_heading_path():
    doc = parse_document("guide.md", MARKDOWN)
    assert doc.title == "Paths"
    headings = [s.heading for s in doc.sections]
    assert headings == ["Paths", "Paths > Joining", "Paths > Splitting"]
    assert "# not a heading inside a fence" in doc.sections[1].text


def test_rst_levels_follow_the_order_adornments_appear():
    doc = parse_document("paths.rst.txt", RST)
    assert detect_format("paths.rst.txt") == "rst"
    assert [s.heading for s in doc.sections] == [
        "Paths", "Paths > Joining", "Paths > Joining > Details", "Paths > Splitting",
    ]  # fmt: skip


def test_html_drops_scripts_and_keeps_headings():
    html = b"""<html><head><title>Guide</title><script>var x = 'secret';</script></head>
    <body><nav>menu</nav><h1>Paths</h1><p>Intro.</p><h2>Joining</h2><p>Use <code>join</code> here.</p></body></html>"""
    doc = parse_document("page.html", html)
    assert doc.title == "Guide"
    assert "secret" not in doc.text and "menu" not in doc.text
    assert doc.sections[-1].heading == "Paths > Joining"
    assert "Use join here." in doc.sections[-1].text


def test_docx_headings_become_sections():
    import docx

    document = docx.Document()
    document.add_heading("Manual", level=1)
    document.add_paragraph("First paragraph.")
    document.add_heading("Install", level=2)
    document.add_paragraph("Run pip install.")
    buffer = io.BytesIO()
    document.save(buffer)
    doc = parse_document("manual.docx", buffer.getvalue())
    assert doc.sections[-1].heading == "Manual > Install"
    assert doc.sections[-1].text == "Run pip install."


def test_pdf_pages_are_numbered():
    from fpdf import FPDF

    pdf = FPDF()
    for text in ("The first page talks about apples.", "The second page talks about pears."):
        pdf.add_page()
        pdf.set_font("Helvetica", size=12)
        pdf.cell(text=text)
    doc = parse_document("fruit.pdf", bytes(pdf.output()))
    assert [s.page for s in doc.sections] == [1, 2]
    assert "pears" in doc.sections[1].text


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("archive.zip", b"PK...", "unsupported file type"),
        ("broken.pdf", b"%PDF-1.4 this is not a pdf", "PDF"),
        ("broken.docx", b"not a zip", "cannot read"),
        ("empty.md", b"   \n\n", "no text"),
        ("latin.txt", "café".encode("latin-1"), "UTF-8"),
    ],
)
def test_unreadable_documents_are_refused_with_a_reason(name, data, message):
    with pytest.raises(DocumentError, match=message) as info:
        parse_document(name, data)
    assert info.value.status_code == 400


def test_sentences_split_on_punctuation_and_blank_lines():
    text = "First one. Second one! Third? yes\n\nA new paragraph without a stop"
    assert split_sentences(text) == ["First one.", "Second one!", "Third? yes", "A new paragraph without a stop"]


def _doc(*sections: tuple[str, str]) -> ParsedDocument:
    return ParsedDocument("t", "text", [Section(h, t) for h, t in sections])


def test_sentence_windows_respect_size_and_overlap():
    sentences = " ".join(f"Sentence number {i} has six words." for i in range(40))
    chunks = SentenceWindowChunker(chunk_words=30, overlap_words=12).split(_doc(("", sentences)))
    assert all(len(c.text.split()) <= 30 for c in chunks)
    assert len(chunks) > 5
    for before, after in itertools.pairwise(chunks):
        last_two = before.text.split(". ")[-2:]
        assert after.text.startswith(last_two[0].rstrip(".")), "the next window starts with the carried sentences"
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_heading_chunker_never_crosses_a_section():
    doc = _doc(("A", "Alpha one. Alpha two."), ("B", "Beta one. Beta two."))
    chunks = HeadingChunker(chunk_words=100, overlap_words=10).split(doc)
    assert [(c.section, c.text) for c in chunks] == [("A", "Alpha one. Alpha two."), ("B", "Beta one. Beta two.")]
    merged = SentenceWindowChunker(chunk_words=100, overlap_words=10).split(doc)
    assert len(merged) == 1 and merged[0].section == "A"


def test_a_sentence_longer_than_a_window_is_cut_by_words():
    chunks = SentenceWindowChunker(chunk_words=20, overlap_words=0).split(_doc(("", "word " * 50)))
    assert [len(c.text.split()) for c in chunks] == [20, 20, 10]
