"""Build the demo fine-tuning and evaluation data from the curated Python documentation.

    python -m pipelines.finetune.demo_data --input .lathe/data/curated/data --out .lathe/data/sft
    python -m pipelines.finetune.demo_data ... --max-examples 500 --json   # cap SFT/DPO, print the manifest

What the data is. Each example asks what one documented Python API does ("What does
`json.dumps()` do?") and answers with the first sentence of that API's own description
in the Python 3.11 documentation, cleaned of reStructuredText markup (``:func:`x``` ->
``x()``, ````code```` -> ``code``, ``*arg*`` -> ``arg``). The APIs are the targets of
the Python-domain directives ``function``, ``method`` (and its class-, static-,
abstract-, coroutine- and awaitable- forms), ``decorator``, ``class`` and ``exception``;
the module comes from ``.. module::`` / ``.. currentmodule::`` or a ``:module:`` option.
C-API directives (``c:function``) are left out. The outputs, in ``--out``:

- ``sft.jsonl``: ``{"messages": [system, user, assistant]}`` chat examples, and a
  ``--general-share`` (25 %) of replay from ``pipelines.finetune.general_chat``: general
  ``[user, assistant]`` chat and safe behaviour (``pipelines.finetune.safety_chat``), the
  replay that keeps what the model knew;
- ``dpo.jsonl``: ``{"prompt": [system, user], "chosen": summary, "rejected": summary}``,
  the rejected answer being the summary of a different API, preferably of the same
  module, drawn with the seed; never the same text as the chosen one (TRL's conversational
  preference format wants ``chosen``/``rejected`` as ``[{"role": "assistant", ...}]``:
  wrap them when loading);
- ``eval_questions.jsonl``: ``{"question", "answer", "name"}`` for APIs kept out of
  training, to score exact match / token F1 through the OpenAI API (send the manifest's
  ``system_prompt`` with each question);
- ``heldout.jsonl``: ``{"id", "text"}`` whole curated pages kept out, for perplexity;
- ``manifest.json``: counts, skips by reason, the seed, the split rules, the source, the
  SHA-256 of each file, and the held-out page ids (pretraining should skip them).

What it is not. It is not a general instruction data set and teaches no reasoning,
coding or conversation: it teaches a model to answer "what does X do" about the
standard library the way the documentation words it. The answers are the docs' own
first sentences, not written or checked by people; a first sentence is sometimes only
part of the story ("Return a copy of the string with ..." says nothing of errors).

Why the curated text and not the RST files. Curation's normaliser strips each line and
collapses runs of blank lines but keeps line breaks, so directive lines
(``.. function:: dump(obj, fp, ...)``), option lines (``:module: os``) and the blank
line before a directive's content all survive: the data is parsed from the curated
Parquet, so it inherits curation's deduplication and PII redaction (data lineage:
curated -> fine-tune data). What does not survive is indentation, so a method written
without its class (``.. method:: append(x)`` inside ``.. class:: deque``) is given the
class most recently declared on the page; a new section heading, a ``.. function::``, or
a module change ends that class (checked against the RST sources' indentation: 5,989 of
5,990 names agree). Also lost: whether the paragraph after a directive with no content
of its own is indented under it, so a few stacked directives (``locale.bindtextdomain``)
take the page's next paragraph as their description. ``--source-rst`` is only recorded
in the manifest as where the curated corpus came from.

Skipped and counted: no description (or one that opens with a directive such as
``versionadded``), field lists, a sentence with a PII placeholder or markup this cannot
clean (a ``:ref:`` without a title shows a heading only Sphinx knows), under
``MIN_WORDS`` or over ``MAX_WORDS`` words, or ending in a colon (it introduces a list or
an example), and a name documented twice (the first page in id order wins).

Splits (both stable across machines, Python versions and seeds):
- a page is held out when ``sha256("page:" + id) % 100 < 5``;
- an API goes to ``eval_questions.jsonl`` instead of training when
  ``sha256("name:" + qualified_name) % 100 < 10`` or its page is held out.
The seed only orders the training examples (so ``--max-examples`` takes a spread of
modules) and picks the rejected answers; the question phrasing (one of four templates)
follows the name's hash, so the evaluation set is the same whatever the seed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from lathe.errors import ConfigError
from pipelines.finetune.general_chat import general_examples

DEFAULT_SOURCE_RST = Path("/usr/share/doc/python3.11/html/_sources")
# The share of sft.jsonl that is general chat (pipelines/finetune/general_chat.py).
GENERAL_SHARE = 0.25
SYSTEM_PROMPT = (
    "You are Lathe's Python documentation assistant. Answer in one sentence, "
    "the way the Python 3.11 documentation describes the API."
)
TEMPLATES = (
    "What does `{name}` do?",
    "What is `{name}` for?",
    "In one sentence, what does `{name}` do?",
    "According to the Python documentation, what does `{name}` do?",
)
EVAL_PERCENT = 10
HELDOUT_PAGE_PERCENT = 5
MIN_WORDS = 3  # "Open local files." is a fine answer; "Fork." is not
MAX_WORDS = 40

FUNCTION_KINDS = frozenset({"function", "coroutinefunction", "awaitablefunction", "decorator"})
METHOD_KINDS = frozenset(
    {"method", "classmethod", "staticmethod", "abstractmethod", "coroutinemethod", "awaitablemethod", "decoratormethod"}
)
CLASS_KINDS = frozenset({"class", "exception"})
_DIRECTIVE = re.compile(r"^\.\. (?:py:)?([a-z]+)::\s*(.*)$")
_ADORNMENT = re.compile(r"^([=\-~^\"'`#*+<>:._])\1{3,}$")  # section over/underlines, transitions
_NAME = re.compile(r"^(?:async\s+)?@?([A-Za-z_][\w.]*)")
PLACEHOLDER = re.compile(r"<(EMAIL|PHONE|IP_ADDRESS|CREDIT_CARD|IBAN|US_SSN|SECRET)>")


@dataclass(frozen=True)
class ApiDoc:
    """One documented API and the first paragraph of its description, as written."""

    name: str  # qualified: json.dumps, collections.deque.append, str.join
    kind: str
    module: str
    page: str
    paragraph: str
    noindex: bool = False

    @property
    def shown(self) -> str:
        """The name as the rendered docs show it."""
        if self.kind in ("decorator", "decoratormethod"):
            return f"@{self.name}"
        return self.name if self.kind in CLASS_KINDS else f"{self.name}()"


def bucket(key: str) -> int:
    """0-99 from SHA-256: unlike ``hash()``, the same on every machine and run."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 100


def _qualify(prefix: str, name: str) -> str:
    if not prefix or name == prefix or name.startswith(prefix + "."):
        return name
    return f"{prefix}.{name}"


def parse_page(page: str, text: str) -> list[ApiDoc]:
    """The API directives on one curated page, with their first body paragraph (may be empty)."""
    lines = text.split("\n")
    module, cls = "", None
    found: list[ApiDoc] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if _ADORNMENT.match(line) and (i < 2 or len(line) >= len(lines[i - 2])):
            cls = None  # a section cannot sit inside a class body
            continue
        match = _DIRECTIVE.match(line)
        if not match:
            continue
        kind, argument = match.groups()
        if kind in ("module", "currentmodule"):
            module, cls = ("" if argument.strip() == "None" else argument.strip()), None
            continue
        if kind not in FUNCTION_KINDS | METHOD_KINDS | CLASS_KINDS:
            continue
        signature = argument
        while signature.endswith("\\") and i < len(lines):
            signature = signature[:-1] + lines[i]
            i += 1
        # Header: more signatures and options run up to the first blank line.
        entry_module, noindex = module, False
        while i < len(lines) and lines[i] and not lines[i].startswith(".. "):
            option = lines[i]
            i += 1
            if option.startswith(":module:"):
                entry_module = option.removeprefix(":module:").strip()
            elif option.startswith((":noindex:", ":no-index:")):
                noindex = True
        name_match = _NAME.match(signature)
        if not name_match:
            continue
        name = name_match.group(1).rstrip(".")
        if kind in METHOD_KINDS and "." not in name and cls:
            qualified = f"{cls}.{name}"
        else:
            qualified = _qualify(entry_module, name)
        if kind in CLASS_KINDS:
            cls = qualified
        elif kind in FUNCTION_KINDS:
            cls = None
        while i < len(lines) and not lines[i]:
            i += 1
        if i < len(lines) and lines[i].startswith(".. index::"):
            # Index entries ("single: process; killing") are not prose: the description follows.
            while i < len(lines) and lines[i]:
                i += 1
            while i < len(lines) and not lines[i]:
                i += 1
        body: list[str] = []
        # A body that opens with a directive (versionadded, note, another API) has no
        # summary sentence we can tell apart from that directive's own content.
        if i < len(lines) and not lines[i].startswith(".."):
            while i < len(lines) and lines[i] and not lines[i].startswith(".. "):
                body.append(lines[i])
                i += 1
        found.append(ApiDoc(qualified, kind, entry_module, page, " ".join(body), noindex))
    return found


_ROLE = re.compile(r":(?:[\w-]+:)?([\w-]+):`([^`]+)`")
_LINK = re.compile(r"`([^`<]+?)\s*<[^`>]*>`__?")
_NAMED_REF = re.compile(r"`([^`]+)`__?(?!\w)")
_SIMPLE_REF = re.compile(r"(?<![\w`:~.])([A-Za-z][\w-]*[A-Za-z0-9])__?(?![\w`])")  # epoch_ -> epoch
_LITERAL = re.compile(r"``(.+?)``")
_STRONG = re.compile(r"\*\*([^\s*](?:[^*]*[^\s*])?)\*\*")
_EMPHASIS = re.compile(r"\*([^\s*](?:[^*]*[^\s*])?)\*")
_FOOTNOTE = re.compile(r"\s*\[(?:#[\w-]*|\d+|\*)\]_")
_ABBREVIATIONS = ("e.g.", "i.e.", "cf.", "vs.", "viz.", "approx.")
_UNRESOLVED = "\x06"
_FIELD_LIST = re.compile(r"^:[^`:]+:(\s|$)")  # ":param fun: ..." (turtle's docs)


def _role(match: re.Match) -> str:
    role, content = match.groups()
    content = content.strip()
    title = re.match(r"^(.*?)\s*<([^<>]+)>$", content)
    if title and title.group(1):
        return title.group(1)
    if role in ("ref", "doc"):
        return _UNRESOLVED  # the link shows the target's title, which only Sphinx knows: mark it unclean
    content = content.lstrip("!")
    if content.startswith("~"):
        content = content[1:].rsplit(".", 1)[-1]
    if role == "pep":
        return f"PEP {content}"
    if role == "rfc":
        return f"RFC {content}"
    if role in ("func", "meth") and not content.endswith(")"):
        return f"{content}()"
    if role == "abbr":
        return re.sub(r"\s*\(.*\)$", "", content)
    return content


def clean_rst(paragraph: str) -> str:
    """Inline reStructuredText to plain text; markup this does not know is left for the caller to see."""
    literals: list[str] = []

    def keep_literal(match: re.Match) -> str:
        literals.append(match.group(1))
        return f"\x04{len(literals) - 1}\x05"

    # Literals first: their content is code, and keeps its backslashes, stars and underscores.
    text = _LITERAL.sub(keep_literal, paragraph)
    # Then escapes: "\ " joins, an escaped star or backtick is text, not markup.
    text = text.replace("\\ ", "").replace("\\*", "\x02").replace("\\`", "\x03")
    text = re.sub(r"\\(.)", r"\1", text)
    text = _SIMPLE_REF.sub(r"\1", text)  # before roles: a role's target may end in "_"
    text = _ROLE.sub(_role, text)
    text = _LINK.sub(r"\1", text)
    text = _NAMED_REF.sub(r"\1", text)
    text = _FOOTNOTE.sub("", text)
    text = _STRONG.sub(r"\1", text)
    text = _EMPHASIS.sub(r"\1", text)
    text = re.sub("\x04(\\d+)\x05", lambda m: literals[int(m.group(1))], text)
    text = text.replace("\x02", "*").replace("\x03", "`")
    return re.sub(r"\s+", " ", text).strip()


def first_sentence(text: str) -> str:
    """Up to the first full stop, question or exclamation mark followed by a space."""
    for match in re.finditer(r"[.!?](?=\s)", text):
        head = text[: match.end()]
        if not head.lower().endswith(_ABBREVIATIONS):
            return head
    return text


def summarise(paragraph: str) -> tuple[str | None, str]:
    """The answer for one description, or None and why it was skipped."""
    if not paragraph:
        return None, "no description"
    if _FIELD_LIST.match(paragraph) or paragraph.startswith((">>>", "|", "+", "=")):
        return None, "description is not prose"
    sentence = first_sentence(clean_rst(paragraph))
    if PLACEHOLDER.search(sentence):
        return None, "PII placeholder"
    if re.search(r"`|\|\w+\||\.\. |\x04|\x05|\x06", sentence):
        return None, "markup left after cleaning"
    words = len(sentence.split())
    if words < MIN_WORDS:
        return None, f"under {MIN_WORDS} words"
    if words > MAX_WORDS:
        return None, f"over {MAX_WORDS} words"
    if not sentence.endswith((".", "?", "!", ".)", '."', ".'")):
        return None, "not a full sentence (ends with a colon or no stop)"
    return sentence, "ok"


def read_curated(input_dir: Path) -> list[tuple[str, str]]:
    """(id, text) for every page of the curated Parquet shards, sorted by id."""
    import pyarrow.parquet as pq

    if not input_dir.is_dir():
        raise ConfigError(f"--input: {input_dir} is not a folder (run curation first: lathe data curate)")
    files = sorted(input_dir.glob("*.parquet"))
    if not files:
        raise ConfigError(f"--input: no .parquet files in {input_dir} (expected curation's output/data)")
    pages: dict[str, str] = {}
    for path in files:
        try:
            schema = pq.read_schema(path)
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise ConfigError(f"--input: {path} is not a readable Parquet file ({exc})") from None
        if "text" not in schema.names:
            raise ConfigError(f"--input: {path} has no 'text' column (columns: {', '.join(schema.names)})")
        table = pq.read_table(path, columns=[c for c in ("id", "text") if c in schema.names]).to_pydict()
        ids = table.get("id") or [None] * len(table["text"])
        for doc_id, text in zip(ids, table["text"], strict=True):
            if isinstance(text, str) and text:
                doc_id = str(doc_id) if doc_id is not None else hashlib.sha1(text.encode()).hexdigest()[:16]
                pages.setdefault(doc_id, text)
    return sorted(pages.items())


def _question(doc: ApiDoc) -> str:
    return TEMPLATES[bucket("template:" + doc.name) % len(TEMPLATES)].format(name=doc.shown)


def _write_jsonl(path: Path, rows: list[dict]) -> str:
    data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def build(
    input_dir: Path,
    out: Path,
    *,
    max_examples: int | None = None,
    seed: int = 7,
    source_rst: Path | None = DEFAULT_SOURCE_RST,
    general_share: float = GENERAL_SHARE,
) -> dict:
    """Write the five files into ``out`` and return the manifest (see the module docstring)."""
    pages = read_curated(Path(input_dir))
    heldout_pages = [(pid, text) for pid, text in pages if bucket("page:" + pid) < HELDOUT_PAGE_PERCENT]
    heldout_ids = {pid for pid, _ in heldout_pages}

    # One answer per name: a page earlier in id order wins, an indexed entry over a :noindex: one.
    skipped: Counter[str] = Counter()
    docs: dict[str, tuple[ApiDoc, str]] = {}
    found = sorted((d for pid, text in pages for d in parse_page(pid, text)), key=lambda d: (d.noindex, d.page))
    for doc in found:
        if doc.name in docs:
            skipped["documented twice"] += 1
            continue
        answer, reason = summarise(doc.paragraph)
        if answer is None:
            skipped[reason] += 1
            continue
        docs[doc.name] = (doc, answer)

    def held_out(doc: ApiDoc) -> bool:
        return bucket("name:" + doc.name) < EVAL_PERCENT or doc.page in heldout_ids

    train = sorted(
        (pair for pair in docs.values() if not held_out(pair[0])),
        key=lambda pair: hashlib.sha256(f"{seed}:{pair[0].name}".encode()).hexdigest(),
    )
    if max_examples is not None:
        train = train[:max_examples]
    evaluation = sorted((pair for pair in docs.values() if held_out(pair[0])), key=lambda pair: pair[0].name)

    by_module: dict[str, list[tuple[str, str]]] = defaultdict(list)
    everyone = sorted((doc.name, answer) for doc, answer in train)
    for doc, answer in sorted(train, key=lambda pair: pair[0].name):
        by_module[doc.module].append((doc.name, answer))

    sft, dpo = [], []
    for doc, answer in train:
        prompt = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": _question(doc)}]
        sft.append({"messages": [*prompt, {"role": "assistant", "content": answer}]})
        # Same-module summaries are the harder negatives; fall back to any other API.
        rivals = [a for n, a in by_module[doc.module] if n != doc.name and a != answer]
        rivals = rivals or [a for n, a in everyone if n != doc.name and a != answer]
        if rivals:
            rejected = random.Random(f"{seed}:{doc.name}").choice(rivals)
            dpo.append({"prompt": prompt, "chosen": answer, "rejected": rejected})

    # Replay: general chat mixed in, so the task does not overwrite what the model knew.
    general = general_examples(round(len(sft) * general_share / (1 - general_share)), seed)
    # Shuffled by a seeded hash of each row and its place, so the cycled replay's repeats spread out.
    mixed = list(enumerate(sft + general))
    mixed.sort(key=lambda pair: hashlib.sha256(f"{seed}:{pair[0]}:{json.dumps(pair[1])}".encode()).hexdigest())
    sft = [row for _, row in mixed]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    eval_rows = [{"question": _question(d), "answer": a, "name": d.name} for d, a in evaluation]
    hashes = {
        "sft.jsonl": _write_jsonl(out / "sft.jsonl", sft),
        "dpo.jsonl": _write_jsonl(out / "dpo.jsonl", dpo),
        "eval_questions.jsonl": _write_jsonl(out / "eval_questions.jsonl", eval_rows),
        "heldout.jsonl": _write_jsonl(out / "heldout.jsonl", [{"id": i, "text": t} for i, t in heldout_pages]),
    }
    counts = {"pages": len(pages), "heldout_pages": len(heldout_pages), "apis_found": len(found),
              "apis_usable": len(docs), "sft": len(sft), "general": len(general), "dpo": len(dpo),
              "eval_questions": len(eval_rows), "skipped": dict(sorted(skipped.items()))}  # fmt: skip
    manifest = _manifest(input_dir, source_rst, seed, max_examples, general_share, counts, hashes, heldout_ids)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


def _manifest(input_dir, source_rst, seed, max_examples, general_share, counts, hashes, heldout_ids) -> dict:
    """What was built, from what, how it was split, and each file's SHA-256."""
    return {
        "source": {
            "input": str(input_dir),
            "curated_from": str(source_rst) if source_rst else None,
            "description": "Python 3.11 documentation (reStructuredText), curated: normalised, deduplicated, "
            "PII redacted",
        },
        "seed": seed,
        "max_examples": max_examples,
        "split": {
            "eval": f"sha256('name:' + qualified_name) % 100 < {EVAL_PERCENT}, or the API's page is held out",
            "heldout_pages": f"sha256('page:' + page_id) % 100 < {HELDOUT_PAGE_PERCENT}",
        },
        "counts": counts,
        "system_prompt": SYSTEM_PROMPT,
        "general_share": general_share,
        "general_chat": "pipelines/finetune/general_chat.py: fact tables as user/assistant pairs, no system "
        "prompt, and pipelines/finetune/safety_chat.py: injections ignored, records and jailbreaks declined",
        "templates": list(TEMPLATES),
        "files": hashes,
        "heldout_page_ids": sorted(heldout_ids),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.finetune.demo_data", description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=Path(".lathe/data/curated/data"), help="curated Parquet shards")
    parser.add_argument("--out", type=Path, default=Path(".lathe/data/sft"), help="folder for the five files")
    parser.add_argument(
        "--source-rst",
        type=Path,
        default=DEFAULT_SOURCE_RST,
        help="where the curated corpus came from; recorded in the manifest (the text is read from --input)",
    )
    parser.add_argument("--max-examples", type=int, default=None, help="cap the SFT and DPO examples")
    parser.add_argument("--seed", type=int, default=7, help="orders training examples and picks rejected answers")
    parser.add_argument("--general-share", type=float, default=GENERAL_SHARE,
                        help="share of general chat examples mixed into sft.jsonl (0: none)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON")
    args = parser.parse_args(argv)
    if args.max_examples is not None and args.max_examples < 1:
        parser.error("--max-examples must be at least 1")
    if not 0 <= args.general_share < 1:
        parser.error("--general-share must be at least 0 and below 1")
    try:
        manifest = build(
            args.input, args.out, max_examples=args.max_examples, seed=args.seed, source_rst=args.source_rst,
            general_share=args.general_share,
        )  # fmt: skip
    except ConfigError as exc:
        print(f"demo_data: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        print(json.dumps(manifest, indent=2, ensure_ascii=False))
        return 0
    counts = manifest["counts"]
    print(
        f"{counts['pages']} curated pages -> {counts['apis_found']} API entries, {counts['apis_usable']} usable; "
        f"skipped: {', '.join(f'{k} {v}' for k, v in counts['skipped'].items()) or 'none'}"
    )
    print(
        f"{counts['sft']} SFT, {counts['dpo']} DPO, {counts['eval_questions']} eval questions, "
        f"{counts['heldout_pages']} held-out pages -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
