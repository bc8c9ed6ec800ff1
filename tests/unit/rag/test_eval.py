"""hit@k, MRR and faithfulness over a question set (``lathe rag eval``)."""

from __future__ import annotations

import json

import pytest

from lathe.errors import InvalidRequestError
from lathe.rag_eval import evaluate_questions, load_questions


def test_hit_at_k_and_mrr_count_the_first_relevant_rank():
    items = [
        {"question": "q1", "expected_source": "library/os.path.rst.txt"},
        {"question": "q2", "expected_doc_id": "doc-b"},
        {"question": "q3", "expected_text": "never there"},
    ]
    ranked = {
        "q1": [{"source": "/usr/share/doc/library/os.path.rst.txt"}],
        "q2": [{"source": "x", "doc_id": "doc-a"}, {"source": "y", "doc_id": "doc-b"}],
        "q3": [{"source": "z", "text": "something else"}],
    }
    answers = {"q1": {"grounded": True, "faithfulness": 1.0}, "q2": {"grounded": False}}
    report = evaluate_questions(items, ranked.__getitem__, answers.__getitem__, k=5, answers=2)
    assert report["hit_at_k"] == pytest.approx(2 / 3)
    assert report["mrr"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert report["answered"] == 1 and report["unknown"] == 1 and report["faithfulness"] == 1.0
    assert report["misses"] == [{"question": "q3", "expected": "never there"}]


def test_question_files_are_checked_line_by_line(tmp_path):
    good = tmp_path / "q.jsonl"
    good.write_text(json.dumps({"question": "What?", "expected_source": "a.md"}) + "\n\n")
    assert load_questions(good) == [{"question": "What?", "expected_source": "a.md"}]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "What?"}) + "\n")
    with pytest.raises(InvalidRequestError, match=r"bad\.jsonl:1: needs one of"):
        load_questions(bad)
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{not json\n")
    with pytest.raises(InvalidRequestError, match=r"broken\.jsonl:1: not JSON"):
        load_questions(broken)


def test_each_kind_of_question_is_reported_apart():
    items = [
        {"question": "api", "expected_source": "a.md", "kind": "api"},
        {"question": "user1", "expected_text": "the answer starts here", "kind": "user"},
        {"question": "user2", "expected_text": "not retrieved", "kind": "user"},
    ]
    ranked = {
        "api": [{"source": "docs/a.md"}],
        "user1": [{"source": "docs/a.md", "text": "intro"}, {"source": "docs/a.md", "text": "the answer starts here."}],
        "user2": [{"source": "docs/a.md", "text": "intro"}],  # the right page, not the answer's chunk
    }
    report = evaluate_questions(items, ranked.__getitem__, k=5)
    assert report["by_kind"] == {
        "api": {"questions": 1, "hit_at_k": 1.0, "mrr": 1.0},
        "user": {"questions": 2, "hit_at_k": 0.5, "mrr": 0.25},
    }
    assert evaluate_questions(items[:1], ranked.__getitem__, k=5)["by_kind"] == {"api": {
        "questions": 1, "hit_at_k": 1.0, "mrr": 1.0}}  # fmt: skip
    plain = [{"question": "api", "expected_source": "a.md"}]
    assert evaluate_questions(plain, ranked.__getitem__, k=5)["by_kind"] == {}


def test_the_shipped_user_questions_name_a_sentence_of_their_page():
    from services.rag.demo_questions import DEFAULT_SOURCE, user_questions
    from services.rag.documents import parse_document

    rows = user_questions()
    assert len(rows) >= 50 and len({r["page"] for r in rows}) == 40
    if not DEFAULT_SOURCE.is_dir():
        pytest.skip(f"{DEFAULT_SOURCE} is not installed (Debian's python3.11-doc: make install-system)")
    for row in rows:
        assert row["question"].strip() and 5 <= len(row["expected_text"].split()) <= 12, row
        page = DEFAULT_SOURCE / row["page"]
        # As the parser reads the page: the words of the answer's first sentence are there.
        assert row["expected_text"] in parse_document(page.name, page.read_bytes()).text, row
