import pandas as pd

from pipelines.curation.config import StagesConfig
from pipelines.curation.decontaminate import build_index, contamination
from pipelines.curation.stages import apply_decisions, clean_batch, contamination_batch

BENCHMARK = (
    "Which river flows through the city that hosted the first modern olympic games in the year eighteen ninety six"
)


def test_documents_sharing_a_13gram_with_an_eval_set_are_found():
    index = build_index([BENCHMARK], 13)
    leaked = "Trivia night. " + BENCHMARK.upper() + "? Answer below."
    assert contamination(leaked, index, 13) >= 1
    near_miss = " ".join(BENCHMARK.split()[:12]) + " and something else entirely different here"
    assert contamination(near_miss, index, 13) == 0
    assert contamination("short text", index, 13) == 0


def test_contamination_batch_counts_per_document():
    index = build_index([BENCHMARK], 13)
    batch = pd.DataFrame({"key": ["a", "b"], "text": [BENCHMARK, "unrelated words only in this one"]})
    out = contamination_batch(batch, index, 13)
    assert list(out["contaminated_ngrams"]) == [len(BENCHMARK.split()) - 12, 0]


def test_clean_batch_marks_each_drop_with_stage_and_reason():
    good = (
        "The lighthouse keeper climbed the stairs every evening to light the lamp. "
        "He kept a journal of the ships that passed, and of the weather that came with them. "
        "In winter the storms were long and the nights were longer, but the light never failed."
    )
    batch = pd.DataFrame(
        {
            "id": ["ok", "short", "unread"],
            "text": [good + " mail me at ada@example.org", "too short", ""],
            "source": ["s", "s", "s"],
            "reason": [None, None, "not valid UTF-8 or UTF-16 text"],
        }
    )
    stages = StagesConfig.model_validate({"quality": {"min_words": 20}})
    out = clean_batch(batch, stages)
    assert out["stage"].isna().iloc[0]
    assert list(out["stage"].iloc[1:]) == ["quality", "read"]
    assert out["reason"].iloc[1] == "gopher_min_words"
    assert "<EMAIL>" in out["text"].iloc[0] and out["pii_email"].iloc[0] == 1
    decided = apply_decisions(out, {out["key"].iloc[0]: ("near_dedup", "near duplicate of x")})
    assert decided["stage"].iloc[0] == "near_dedup" and decided["reason"].iloc[0] == "near duplicate of x"


def test_decisions_mark_only_rows_no_cleaning_stage_dropped():
    batch = pd.DataFrame(
        {
            "key": ["a", "b", "c", "d"],
            "stage": [None, "quality", None, None],
            "reason": [None, "gopher_min_words", None, None],
        }
    )
    decisions = {"a": ("exact_dedup", "copy of z"), "b": ("near_dedup", "near y"), "zz": ("x", "y")}
    decided = apply_decisions(batch, decisions)
    assert list(decided["stage"].iloc[:2]) == ["exact_dedup", "quality"] and decided["stage"].iloc[2:].isna().all()
    assert (
        list(decided["reason"].iloc[:2]) == ["copy of z", "gopher_min_words"]
        and decided["reason"].iloc[2:].isna().all()
    )
    assert pd.isna(batch["stage"].iloc[0])  # the input batch is left as it was
    assert apply_decisions(batch, {})["stage"].isna().tolist() == [True, False, True, True]
