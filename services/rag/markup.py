"""Markup that is not prose, removed before chunking: RST labels and directives, Markdown links.

Chunks are embedded and BM25-indexed as they are, so ``.. _hash-algorithms:`` or
``:meth:`update``` would be indexed as words and shown to the model as text. These
rewrites keep what a reader sees on the rendered page and drop what only the renderer
reads. Sphinx and docutils would do this by rendering the page, but they parse a whole
project (roles, extensions, cross-references) and fail on a lone file that uses its own
roles; this is a line-level reading that never fails on any input.

reStructuredText:

- labels (``.. _name:``), comments and renderer-only directives (``index``,
  ``moduleauthor``, ``toctree``, ``testsetup`` …, with their indented bodies) go;
- API directives keep their signature as text (``.. function:: join(path, *paths)`` reads
  ``join(path, *paths)``; ``:synopsis:`` keeps its text, other options go);
- admonitions and version notes read as Sphinx prints them ("Note:", "New in version 3.2.");
- code directives keep their code; roles, literals and links keep their visible text.

Markdown: links and images keep their text, reference definitions and HTML tags go,
fenced code keeps its code without the fences.
"""

from __future__ import annotations

import re

_DIRECTIVE = re.compile(r"^(\s*)\.\.\s+([A-Za-z][\w:-]*)::\s*(.*)$")
_LABEL = re.compile(r"^\s*\.\.\s+_[^:]*:.*$|^\s*\.\.\s+\|[^|]+\|.*$")
_COMMENT = re.compile(r"^(\s*)\.\.(\s.*)?$")
_OPTION = re.compile(r"^\s*:([\w-]+):\s*(.*)$")
_ROLE = re.compile(r"(?::[\w:.-]+:)?`([^`<]*?)\s*(?:<[^>]*>)?`(?::[\w:.-]+:)?_{0,2}")
_LITERAL = re.compile(r"``(.+?)``")
_STRONG = re.compile(r"\*\*(\S(?:.*?\S)?)\*\*")
_TRANSITION = re.compile(r"^\s*([-=~^*#+])\1{3,}\s*$")

DROP = frozenset(
    "index moduleauthor sectionauthor testsetup testcleanup highlight toctree raw include literalinclude "
    "tabularcolumns currentmodule contents only program productionlist".split()
)
CODE = frozenset("code-block code sourcecode doctest testcode testoutput".split())
ADMONITIONS = {
    "note": "Note:",
    "warning": "Warning:",
    "seealso": "See also:",
    "important": "Important:",
    "caution": "Caution:",
    "tip": "Tip:",
    "impl-detail": "CPython implementation detail:",
    "availability": "Availability:",
    "sidebar": "",
    "rubric": "",
}
VERSIONS = {
    "versionadded": "New in version {}.",
    "versionchanged": "Changed in version {}:",
    "deprecated": "Deprecated since version {}.",
    "deprecated-removed": "Deprecated since version {}.",
}


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _skip_block(lines: list[str], i: int, indent: int) -> int:
    """The index after the indented body (and blank lines inside it) of the line at ``i``."""
    j = i + 1
    while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > indent):
        j += 1
    return j


def _directive(name: str, argument: str) -> str | None:
    """What a directive line reads as; None drops it with its body."""
    name = name.split(":")[-1]  # py:function -> function
    if name in DROP:
        return None
    if name in CODE:
        return ""
    if name in ADMONITIONS:
        return " ".join(p for p in (ADMONITIONS[name], argument) if p)
    if name in VERSIONS:
        version, _, rest = argument.partition(" ")
        return " ".join(p for p in (VERSIONS[name].format(version.rstrip(",")), rest) if p)
    if name == "audit-event":
        return f"Raises an auditing event {argument}." if argument else ""
    return argument  # function, method, class, module, data, describe …: the signature


def clean_rst_lines(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if _LABEL.match(line) or _TRANSITION.match(line):
            i += 1
            continue
        directive = _DIRECTIVE.match(line)
        if directive:
            indent, name, argument = len(directive.group(1)), directive.group(2), directive.group(3)
            text = _directive(name, argument.strip())
            if text is None:
                i = _skip_block(lines, i, indent)
                continue
            if text:
                out.append(" " * indent + text)
            i += 1
            while i < len(lines) and _OPTION.match(lines[i]) and _indent(lines[i]) > indent:
                option = _OPTION.match(lines[i])
                if option and option.group(1) == "synopsis":
                    out.append(" " * indent + option.group(2))
                i += 1
            continue
        comment = _COMMENT.match(line)
        if comment:
            i = _skip_block(lines, i, len(comment.group(1)))
            continue
        if line.strip() == "::":
            i += 1
            continue
        out.append(line[:-1] if line.endswith("::") else line)
        i += 1
    return out


_NUMBERED = re.compile(r":(rfc|pep):`(\d+)(?:#[^`]*)?`", re.IGNORECASE)


def clean_rst_inline(text: str) -> str:
    text = _LITERAL.sub(r"\1", text)
    text = _NUMBERED.sub(lambda m: f"{m.group(1).upper()} {m.group(2)}", text)
    text = _ROLE.sub(lambda m: m.group(1).lstrip("~!"), text)
    return _STRONG.sub(r"\1", text)


def clean_rst(text: str) -> str:
    return clean_rst_inline("\n".join(clean_rst_lines(text.splitlines())))


_MD_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_MD_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)|\[([^\]]+)\]\[[^\]]*\]")
_MD_REFDEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s+\S+.*$", re.M)
_MD_FENCE = re.compile(r"^\s*(```|~~~).*$", re.M)
_HTML_TAG = re.compile(r"</?[A-Za-z][\w-]*(?:\s[^<>]*)?/?>|<!--.*?-->", re.S)


def clean_markdown(text: str) -> str:
    """Markdown as it reads; code between fences is kept as written, without the fences."""
    out: list[str] = []
    prose: list[str] = []
    in_fence = False
    for line in text.splitlines():
        if _MD_FENCE.match(line):
            if not in_fence:
                out.append(clean_markdown_inline("\n".join(prose)))
                prose = []
            in_fence = not in_fence
            continue
        (out if in_fence else prose).append(line)
    out.append(clean_markdown_inline("\n".join(prose)))
    return "\n".join(part for part in out if part)


def clean_markdown_inline(text: str) -> str:
    text = _MD_REFDEF.sub("", text)
    text = _MD_IMAGE.sub(r"\1", text)
    text = _MD_LINK.sub(lambda m: m.group(1) or m.group(2), text)
    return _HTML_TAG.sub("", text)
