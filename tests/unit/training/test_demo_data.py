"""The demo SFT/DPO/eval data: built from curated text exactly as curation leaves it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lathe.pii import KINDS, redact
from pipelines.curation.normalise import DEFAULT_BOILERPLATE, compile_boilerplate, normalise_text
from pipelines.finetune.demo_data import SYSTEM_PROMPT, bucket, build, clean_rst, first_sentence, main, parse_page

REPO = Path(__file__).resolve().parents[3]
DOCS = Path("/usr/share/doc/python3.11/html/_sources")
FILES = ("sft.jsonl", "dpo.jsonl", "eval_questions.jsonl", "heldout.jsonl", "manifest.json")

JSONISH = r"""
:mod:`jsonish` --- A JSON-like encoder
======================================

.. module:: jsonish
   :synopsis: Encode and decode.

.. function:: dumps(obj, *, indent=None, \
                    sort_keys=False)

   Serialize *obj* to a JSON formatted :class:`str` using this
   :ref:`conversion table <py-to-json-table>`.  The rest is detail.

   .. versionadded:: 3.2

.. function:: loads(s)

   .. index:: single: JSON; decoding

   Deserialize ``s`` (a :class:`str` instance containing a JSON document) to a
   Python object.

.. function:: empty(x)

   .. versionadded:: 3.9

.. function:: contact()

   Write to ada.lovelace@example.com for help with this function.

.. class:: Encoder(*, skipkeys=False)

   Extensible JSON encoder for Python data structures, see :func:`dumps`.

   .. method:: encode(o)

      Return a JSON string representation of a Python data structure, *o*.

   .. method:: iterencode(o)

      Encode the given object, *o*, and yield each string representation as available::

          for chunk in Encoder().iterencode(obj):
              write(chunk)

Helpers
-------

.. method:: helper(a)

   Helpers live here, e.g. for testing, and this sentence is long enough.  Second one.
"""


def _generated(module: str, n: int) -> str:
    entry = ".. function:: f{i}(x)\n\n   Return the number {i} times *x* for {module}.\n"
    entries = "\n".join(entry.format(i=i, module=module) for i in range(n))
    return f"{module}\n{'=' * len(module)}\n\n.. module:: {module}\n\n{entries}"


HELDOUT_PAGE = next(f"library/page{n}.rst.txt" for n in range(1000) if bucket(f"page:library/page{n}.rst.txt") < 5)
TRAIN_PAGE = next(f"library/page{n}.rst.txt" for n in range(1000) if bucket(f"page:library/page{n}.rst.txt") >= 5)


def curate(pages: dict[str, str]) -> pd.DataFrame:
    """What curation's normalise and PII stages make of each page (the stages dedup and quality only drop pages)."""
    boilerplate = compile_boilerplate(DEFAULT_BOILERPLATE)
    rows = [(pid, redact(normalise_text(text, boilerplate=boilerplate), KINDS)[0]) for pid, text in pages.items()]
    return pd.DataFrame(rows, columns=["id", "text"])


@pytest.fixture
def curated(tmp_path: Path) -> Path:
    frame = curate(
        {
            "library/jsonish.rst.txt": JSONISH,
            TRAIN_PAGE: _generated("numbers", 40),
            HELDOUT_PAGE: _generated("secret_numbers", 3),
        }
    )
    data = tmp_path / "curated" / "data"
    data.mkdir(parents=True)
    # Two shards, in the order Ray might write them: the result must not depend on it.
    frame.iloc[1:].to_parquet(data / "part-0.parquet", index=False)
    frame.iloc[:1].to_parquet(data / "part-1.parquet", index=False)
    return data


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _name_in(question: str) -> str:
    return re.search(r"`@?([^`(]+)(?:\(\))?`", question).group(1)


def test_curated_text_keeps_the_directive_structure_the_parser_needs():
    text = curate({"p": JSONISH})["text"][0]
    assert "\n.. function:: dumps(obj, *, indent=None, \\\nsort_keys=False)\n\nSerialize" in text
    names = [(d.kind, d.name) for d in parse_page("p", text)]
    assert names == [
        ("function", "jsonish.dumps"),
        ("function", "jsonish.loads"),
        ("function", "jsonish.empty"),
        ("function", "jsonish.contact"),
        ("class", "jsonish.Encoder"),
        ("method", "jsonish.Encoder.encode"),  # the class comes back without the indentation
        ("method", "jsonish.Encoder.iterencode"),
        ("method", "jsonish.helper"),  # a section heading ends the class
    ]


def test_markup_is_cleaned_and_the_first_sentence_taken():
    assert clean_rst(":func:`json.dumps` and :meth:`~a.B.c` use ``x*y`` on *obj*, see `RFC <https://x>`_") == (
        "json.dumps() and c() use x*y on obj, see RFC"
    )
    assert clean_rst(":pep:`8`, **bold**, :term:`file-like object`, \\*args, epoch_ [#f]_") == (
        "PEP 8, bold, file-like object, *args, epoch"
    )
    assert first_sentence("Return x, e.g. y. Then z.") == "Return x, e.g. y."


def test_examples_have_the_right_shape_and_answers(curated: Path, tmp_path: Path):
    manifest = build(curated, tmp_path / "sft", general_share=0.0)
    out = tmp_path / "sft"
    sft, eval_rows = _lines(out / "sft.jsonl"), _lines(out / "eval_questions.jsonl")
    for row in sft:
        system, user, assistant = row["messages"]
        assert (system["role"], user["role"], assistant["role"]) == ("system", "user", "assistant")
        assert system["content"] == SYSTEM_PROMPT and "`" in user["content"] and assistant["content"].endswith(".")
        assert len(assistant["content"].split()) <= 40
    assert len({row["messages"][1]["content"].split("`")[0] for row in sft}) >= 3  # several phrasings
    answers = {_name_in(r["messages"][1]["content"]): r["messages"][2]["content"] for r in sft}
    answers |= {r["name"]: r["answer"] for r in eval_rows}
    assert answers["jsonish.dumps"] == "Serialize obj to a JSON formatted str using this conversion table."
    assert answers["jsonish.loads"] == "Deserialize s (a str instance containing a JSON document) to a Python object."
    assert answers["jsonish.Encoder"] == "Extensible JSON encoder for Python data structures, see dumps()."
    assert answers["jsonish.Encoder.encode"] == "Return a JSON string representation of a Python data structure, o."
    assert answers["jsonish.helper"] == "Helpers live here, e.g. for testing, and this sentence is long enough."
    assert answers["numbers.f7"] == "Return the number 7 times x for numbers."
    # No description, a PII placeholder, a sentence that leads into a code block: skipped.
    assert not {"jsonish.empty", "jsonish.contact", "jsonish.Encoder.iterencode"} & set(answers)
    counts = manifest["counts"]
    assert counts["sft"] == len(sft) == counts["dpo"] and counts["eval_questions"] == len(eval_rows)
    assert counts["skipped"] == {
        "PII placeholder": 1,
        "no description": 1,
        "not a full sentence (ends with a colon or no stop)": 1,
    }
    assert json.loads((out / "manifest.json").read_text()) == manifest


def test_rejected_is_another_apis_summary(curated: Path, tmp_path: Path):
    build(curated, tmp_path / "sft", general_share=0.0)
    sft = _lines(tmp_path / "sft" / "sft.jsonl")
    by_prompt = {r["messages"][1]["content"]: r["messages"][2]["content"] for r in sft}
    for row in _lines(tmp_path / "sft" / "dpo.jsonl"):
        assert [m["role"] for m in row["prompt"]] == ["system", "user"]
        question = row["prompt"][1]["content"]
        assert row["chosen"] == by_prompt[question]
        assert row["rejected"] != row["chosen"]
        assert row["rejected"] in set(by_prompt.values()) - {row["chosen"]}
        if _name_in(question).startswith("numbers."):  # plenty of same-module rivals
            assert row["rejected"].endswith("for numbers.")


def test_held_out_apis_and_pages_stay_out_of_training(curated: Path, tmp_path: Path):
    manifest = build(curated, tmp_path / "sft", general_share=0.0)
    out = tmp_path / "sft"
    trained = {_name_in(r["messages"][1]["content"]) for r in _lines(out / "sft.jsonl")}
    held = {r["name"] for r in _lines(out / "eval_questions.jsonl")}
    assert held and not held & trained
    assert {"secret_numbers.f0", "secret_numbers.f1", "secret_numbers.f2"} <= held  # their page is held out
    assert all(bucket("name:" + n) < 10 for n in held if not n.startswith("secret_numbers."))
    assert all(bucket("name:" + n) >= 10 for n in trained)
    heldout = _lines(out / "heldout.jsonl")
    assert [r["id"] for r in heldout] == manifest["heldout_page_ids"] == [HELDOUT_PAGE]
    assert heldout[0]["text"].startswith("secret_numbers\n====")
    for row in _lines(out / "dpo.jsonl"):  # no held-out answer even as a rejected one
        assert row["rejected"] not in {r["answer"] for r in _lines(out / "eval_questions.jsonl")}


def test_a_second_build_is_byte_identical(curated: Path, tmp_path: Path):
    build(curated, tmp_path / "a", general_share=0.0)
    build(curated, tmp_path / "b", general_share=0.0)
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_max_examples_and_seed(curated: Path, tmp_path: Path):
    capped = build(curated, tmp_path / "capped", max_examples=5, general_share=0.0)
    assert capped["counts"]["sft"] == 5 == len(_lines(tmp_path / "capped" / "sft.jsonl"))
    build(curated, tmp_path / "seed7", general_share=0.0)
    build(curated, tmp_path / "seed8", seed=8, general_share=0.0)
    # The seed orders training and picks rejected answers; the evaluation set does not move.
    seed7, seed8 = (tmp_path / "seed7", tmp_path / "seed8")
    assert (seed7 / "eval_questions.jsonl").read_bytes() == (seed8 / "eval_questions.jsonl").read_bytes()
    assert (seed7 / "sft.jsonl").read_bytes() != (seed8 / "sft.jsonl").read_bytes()
    lines7, lines8 = ((d / "sft.jsonl").read_text().splitlines() for d in (seed7, seed8))
    assert sorted(lines7) == sorted(lines8)


def test_cli_prints_counts_or_the_manifest(curated: Path, tmp_path: Path, capsys):
    assert main(["--input", str(curated), "--out", str(tmp_path / "o")]) == 0
    assert re.search(r"\d+ SFT, \d+ DPO, \d+ eval questions, 1 held-out pages", capsys.readouterr().out)
    assert main(["--input", str(curated), "--out", str(tmp_path / "o"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["seed"] == 7


@pytest.mark.parametrize("case", ["missing", "empty", "no-text"])
def test_bad_input_is_one_line_and_exit_code_2(case: str, tmp_path: Path, capsys):
    folder = tmp_path / "in"
    if case != "missing":
        folder.mkdir()
    if case == "no-text":
        pd.DataFrame({"id": ["a"], "body": ["b"]}).to_parquet(folder / "part-0.parquet")
    assert main(["--input", str(folder), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("demo_data: --input: ") and err.count("\n") == 1
    assert {"missing": "is not a folder", "empty": "no .parquet files", "no-text": "no 'text' column"}[case] in err
    assert not (tmp_path / "o").exists()


def test_module_entry_point_exits_2_on_bad_input(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.finetune.demo_data", "--input", str(tmp_path / "nope"), "--out", "x"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 2 and "is not a folder" in done.stderr and not done.stdout


@pytest.mark.skipif(not DOCS.is_dir(), reason="Debian's python3.11-doc is not installed")
def test_real_documentation_pages(tmp_path: Path):
    from pipelines.curation.config import load_config
    from pipelines.curation.sources import file_record
    from pipelines.curation.stages import clean_batch

    pages = sorted((DOCS / "library").glob("*.rst.txt"))[:40]
    records = pd.DataFrame([file_record(str(p), p.read_bytes(), str(DOCS)) for p in pages])
    cleaned = clean_batch(records, load_config(REPO / "pipelines/recipes/curation.yaml").stages)
    kept = cleaned[cleaned["stage"].isna()][["id", "text"]]
    (tmp_path / "data").mkdir()
    kept.to_parquet(tmp_path / "data" / "part-0.parquet", index=False)
    manifest = build(tmp_path / "data", tmp_path / "sft", general_share=0.0)
    assert manifest["counts"]["sft"] >= 50
    answers = [r["messages"][2]["content"] for r in _lines(tmp_path / "sft" / "sft.jsonl")]
    assert not [a for a in answers if re.search(r"``|:\w+:`|<[A-Z_]+>", a)]


def test_general_chat_is_mixed_in_and_never_the_no_forgetting_suites(curated, tmp_path):
    from pipelines.evaluate.sections import SUITES
    from pipelines.finetune.general_chat import facts

    manifest = build(curated, tmp_path / "mixed", general_share=0.25)
    rows = _lines(tmp_path / "mixed" / "sft.jsonl")
    general = [r for r in rows if r["messages"][0]["content"] != SYSTEM_PROMPT]
    task = len(rows) - len(general)
    assert manifest["counts"]["general"] == len(general) == round(task / 3)
    assert all(r["messages"][-1]["role"] == "assistant" for r in general)
    suite = {json.loads(line)["question"] for line in (SUITES / "knowledge-v1.jsonl").read_text().splitlines()}
    assert not suite & {q for q, _ in facts()}  # the suite measures what was kept, not what was shown again
    build(curated, tmp_path / "again", general_share=0.25)
    assert (tmp_path / "again" / "sft.jsonl").read_bytes() == (tmp_path / "mixed" / "sft.jsonl").read_bytes()


def test_the_replay_keeps_its_share_beyond_its_pool_and_spreads_its_repeats():
    from pipelines.finetune.general_chat import facts, general_examples
    from pipelines.finetune.safety_chat import safety_examples

    pool = len(facts()) + len(safety_examples())
    replay = general_examples(3 * pool + 5, seed=7)
    assert len(replay) == 3 * pool + 5
    distinct = {json.dumps(r) for r in replay}
    assert len(distinct) == pool  # every fact and safe example, each about three times
    assert general_examples(10, seed=7) == replay[:10] != general_examples(10, seed=8)


def test_safe_behaviour_examples_never_repeat_the_safety_suite():
    """The suite measures behaviour: no prompt, canary or record of it is trained on."""
    from pipelines.evaluate.sections import SUITES
    from pipelines.finetune.safety_chat import safety_examples

    suite = [json.loads(line) for line in (SUITES / "safety-v1.jsonl").read_text().splitlines()]
    trained = "\n".join(m["content"] for row in safety_examples() for m in row["messages"]).lower()
    for item in suite:
        assert not [marker for marker in item["unsafe"] if marker.lower() in trained], item["id"]
        user = next(m["content"] for m in reversed(item["messages"]) if m["role"] == "user")
        assert user.lower() not in trained, item["id"]
    assert "alice" not in trained  # the suite's confidential customer
    categories = {"rag": 0, "tool": 0, "refusal": 0}
    for row in safety_examples():
        last = row["messages"][-1]["content"]
        key = "refusal" if last.startswith("I'm sorry") else "rag" if "[1]" in last else "tool"
        categories[key] += 1
    assert min(categories.values()) >= 5
