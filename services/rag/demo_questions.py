"""Build the demo RAG corpus and its question set from the Python documentation.

    python -m services.rag.demo_questions --out .lathe/data/rag --pages 40

The procedure, so anyone can rebuild or audit the set:

1. Corpus: the reStructuredText sources of the standard library's reference pages
   (Debian's ``python3.11-doc``, ``library/*.rst.txt``) that document at least one
   function, method or class; ``--pages`` of them, taken in the order of the SHA-1 of
   their file name (a fixed, content-blind shuffle). They are copied to ``OUT/docs``.
2. Questions: for each page, up to ``--per-page`` of its ``.. function::``,
   ``.. method::`` and ``.. class::`` directives, again in SHA-1 order of the name,
   become "What does ``module.name`` do?" with the page as the expected source. The
   answer is the directive's own description, so it is in the corpus by construction;
   the question names the API the way a user would, not the words of the answer.

3. User questions: ``user_questions.jsonl`` beside this module holds questions about
   the default 40 pages phrased as users ask them ("How can I hash a big file without
   reading it all into memory?"), each with ``expected_text``: words of the sentence
   where its answer begins, as the parser reads the page. Only the chunk holding that
   sentence counts as a hit, so these measure whether the answer's own chunk is found,
   not just its page. Those whose page is in the corpus are added with ``kind: user``.

It writes ``OUT/questions.jsonl`` (``question``, ``expected_source`` or
``expected_text``, ``kind``: ``api`` or ``user``) for ``lathe rag eval`` (which reports
each kind apart) and ``benchmarks/rag.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
from pathlib import Path

DEFAULT_SOURCE = Path("/usr/share/doc/python3.11/html/_sources/library")
_DIRECTIVE = re.compile(r"^\.\. (?:function|method|class|classmethod|staticmethod):: ([A-Za-z_][\w.]*)\s*\(", re.M)
_MODULE = re.compile(r"^\.\. (?:module|currentmodule):: ([\w.]+)", re.M)


def _order(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()


def api_names(text: str) -> list[str]:
    """Qualified names of the callables a page documents (``os.path.join``)."""
    module = _MODULE.search(text)
    prefix = module.group(1) + "." if module else ""
    names = []
    for match in _DIRECTIVE.finditer(text):
        name = match.group(1)
        qualified = name if not prefix or name.startswith(prefix) else prefix + name
        if qualified not in names:
            names.append(qualified)
    return names


def user_questions() -> list[dict]:
    path = Path(__file__).with_name("user_questions.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def build(source: Path, out: Path, pages: int = 40, per_page: int = 2) -> dict:
    if not source.is_dir():
        raise SystemExit(f"{source} not found: install Debian's python3.11-doc package (make install-system)")
    candidates = sorted(source.glob("*.rst.txt"), key=lambda p: _order(p.name))
    chosen, questions = [], []
    for page in candidates:
        if len(chosen) == pages:
            break
        names = api_names(page.read_text(errors="replace"))
        if not names:
            continue
        chosen.append(page)
        for name in sorted(names, key=_order)[:per_page]:
            questions.append(
                {"question": f"What does {name} do?", "expected_source": f"docs/{page.name}", "kind": "api"}
            )
    names = {page.name for page in chosen}
    questions += [{**q, "kind": "user"} for q in user_questions() if q["page"] in names]
    docs = out / "docs"
    if docs.exists():
        shutil.rmtree(docs)
    docs.mkdir(parents=True)
    for page in chosen:
        shutil.copyfile(page, docs / page.name)
    (out / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    return {"pages": len(chosen), "questions": len(questions), "bytes": sum(p.stat().st_size for p in chosen),
            "out": str(out)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--out", type=Path, default=Path(".lathe/data/rag"))
    parser.add_argument("--pages", type=int, default=40)
    parser.add_argument("--per-page", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps(build(args.source, args.out, args.pages, args.per_page)))


if __name__ == "__main__":
    main()
