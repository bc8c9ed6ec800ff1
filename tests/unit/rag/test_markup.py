"""Markup that is not prose is gone before chunking; what a reader sees on the page stays."""

from __future__ import annotations

from services.rag.documents import parse_document
from services.rag.markup import clean_markdown, clean_rst

RST_PAGE = b"""\
:mod:`hashlib` --- Secure hashes
================================

.. module:: hashlib
   :synopsis: Secure hash and message digest algorithms.
   :noindex:

.. moduleauthor:: Gregory P. Smith <greg@example.org>

.. index::
   single: message digest, MD5

This module implements secure hashes (see :rfc:`1321` and :pep:`452#details`).

.. _hash-algorithms:

Hash algorithms
---------------

Use :func:`~hashlib.sha256` to create a hash of :term:`bytes-like objects <bytes-like object>`,
as in `the guide <https://example.org/guide>`_. Call ``update()`` with **bytes** only::

   h = hashlib.sha256(b"data")

.. function:: file_digest(fileobj, digest, /)

   Return a digest object updated with the contents of a file.

   .. versionadded:: 3.11

.. note::

   Feeding strings into update is not supported.

.. versionchanged:: 3.9 All constructors take *usedforsecurity*.

..
   A comment for the editors: not part of the page.

.. testsetup::

   import hashlib
"""


def test_rst_keeps_what_the_page_shows_and_drops_what_only_the_renderer_reads():
    doc = parse_document("hashlib.rst.txt", RST_PAGE)
    intro, algorithms = doc.sections
    assert intro.heading == "hashlib --- Secure hashes"
    assert "Secure hash and message digest algorithms." in intro.text  # the synopsis reads as text
    assert "see RFC 1321 and PEP 452" in intro.text
    text = algorithms.text
    assert "Use hashlib.sha256 to create a hash of bytes-like objects," in text
    assert "as in the guide. Call update() with bytes only:" in text
    assert 'h = hashlib.sha256(b"data")' in text  # code stays
    assert "file_digest(fileobj, digest, /)" in text  # an API directive keeps its signature
    assert "New in version 3.11." in text and "Note:" in text
    assert "Changed in version 3.9: All constructors take *usedforsecurity*." in text
    for markup in ("..", "::", ":func:", ":term:", "``", "_hash-algorithms", "noindex", "greg@", "MD5", "editors"):
        assert markup not in intro.text + text, markup


def test_a_labelled_section_starts_with_its_prose():
    # The label before "Hash algorithms" is neither the end of the intro nor the start of the section.
    doc = parse_document("hashlib.rst.txt", RST_PAGE)
    assert doc.sections[1].text.lstrip().startswith("Use hashlib.sha256")
    assert not doc.sections[0].text.rstrip().endswith(":")


def test_markdown_links_images_and_html_read_as_text_and_code_stays_as_written():
    page = """# Install

See [the guide](https://example.org/guide "title") and [the FAQ][faq]. ![Diagram of the flow](flow.png)
<div class="badge">Build <b>passing</b></div>

```python
items: list<int> = [1]  # a fence keeps <tags> and [links](x)
```

[faq]: https://example.org/faq
"""
    text = clean_markdown(page)
    assert "See the guide and the FAQ. Diagram of the flow" in text
    assert "Build passing" in text and "<div" not in text and "https://" not in text
    assert "items: list<int> = [1]  # a fence keeps <tags> and [links](x)" in text
    assert "```" not in text


def test_html_page_furniture_is_not_content():
    html = b"""<html><body><header>Site banner</header><aside>Related pages</aside>
    <div role="navigation">Prev | Next</div><h1>Paths<a class="headerlink" href="#paths">\xc2\xb6</a></h1>
    <p>Use join.</p><form><button>Search</button></form></body></html>"""
    doc = parse_document("page.html", html)
    assert doc.sections[-1].heading == "Paths"
    assert doc.text.strip() == "Use join."


def test_clean_rst_never_fails_on_odd_input():
    for text in ("", "..", ".. ::", "::", ":func:`", "``unclosed", ".. note::\n", "`a <b>`_ `c`__"):
        assert isinstance(clean_rst(text), str)
