"""`lathe rag ask --session`: where turns are kept, and what a bad name or file gets."""

from __future__ import annotations

import json

import pytest

from lathe.cli.rag_session import MAX_TURNS, load_turns, new_turns, save_turns, session_path
from lathe.errors import InvalidRequestError


def test_turns_round_trip_and_the_oldest_go_beyond_the_cap(tmp_path):
    path = session_path(tmp_path, "team.chat-1")
    assert path == tmp_path / "rag" / "sessions" / "team.chat-1.json"
    assert load_turns(path) == []  # a new session
    turns = [turn for n in range(MAX_TURNS) for turn in new_turns(f"q{n}", f"a{n}")]
    save_turns(path, turns)
    kept = load_turns(path)
    assert len(kept) == MAX_TURNS and kept[-1] == {"role": "assistant", "content": f"a{MAX_TURNS - 1}"}
    assert not list(path.parent.glob("*.partial"))  # written whole, then moved into place


@pytest.mark.parametrize("name", ["", "../escape", ".hidden", "a b", "x" * 65])
def test_a_bad_session_name_is_refused_naming_the_option(tmp_path, name):
    with pytest.raises(InvalidRequestError) as error:
        session_path(tmp_path, name)
    assert error.value.param == "session"


def test_a_file_that_is_not_a_session_says_how_to_start_over(tmp_path):
    path = session_path(tmp_path, "s")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"messages": []}))
    with pytest.raises(InvalidRequestError, match="--forget"):
        load_turns(path)
