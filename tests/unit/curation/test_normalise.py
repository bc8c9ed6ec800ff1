import re

from pipelines.curation.normalise import DEFAULT_BOILERPLATE, compile_boilerplate, normalise_text, strip_control


def test_nfkc_whitespace_and_control_characters():
    text = "ﬁne\u00a0 text\x00\x07 here\r\n\n\n\nnext\tline  "
    assert normalise_text(text) == "fine text here\n\nnext line"


def test_emoji_sequences_survive():
    family = "👨\u200d👩\u200d👧 and 👍🏽"
    assert normalise_text(family) == family  # ZWJ is a format character, not a control one
    assert strip_control("a\x1bb") == "ab"


def test_cjk_and_code_keep_their_shape():
    code = "def f(x):\n    return {x: 1}"
    assert normalise_text(code, collapse_whitespace=False) == code
    assert normalise_text("日本語の文章です。") == "日本語の文章です。"


def test_boilerplate_lines_are_removed():
    text = "Real content here.\nPlease enable JavaScript to view this page, it is required.\nMore content."
    out = normalise_text(text, boilerplate=compile_boilerplate(DEFAULT_BOILERPLATE))
    assert out == "Real content here.\nMore content."


def test_very_long_lines_are_handled():
    line = "word " * 200_000
    out = normalise_text(line, boilerplate=[re.compile("nothing")])
    assert out.count("word") == 200_000
