from pipelines.curation.quality import QualityThresholds, check_quality, words_of

GOOD = (
    "The lighthouse keeper climbed the stairs every evening to light the lamp. "
    "He kept a journal of the ships that passed, and of the weather that came with them. "
    "In winter the storms were long and the nights were longer, but the light never failed. "
    "Children from the village would visit in the summer to hear his stories about the sea."
)
T = QualityThresholds(min_words=20)


def test_ordinary_prose_passes():
    assert check_quality(GOOD, T) is None


def test_each_rule_names_itself():
    assert check_quality("too short to keep", T) == "gopher_min_words"
    assert check_quality(" ".join(["antidisestablishmentarianism"] * 40) + " the and", T) in (
        "gopher_mean_word_length",
        "gopher_top_2gram",
    )
    assert check_quality(GOOD + " # # # # # # # # # # # # # #", T) == "gopher_symbol_ratio"
    bullets = "\n".join(f"• item number {i} with the and of" for i in range(30))
    assert check_quality(bullets, T) == "gopher_bullet_lines"
    assert check_quality("lorem ipsum dolor sit amet " + GOOD, T) == "c4_lorem_ipsum"
    no_stop = " ".join(f"alpha{i} beta{i} gamma{i}" for i in range(20))
    assert check_quality(no_stop, T) == "gopher_stop_words"
    repeated = "\n".join([GOOD] * 4)
    assert check_quality(repeated, T).startswith("gopher_duplicate")


def test_code_passes_unless_c4_braces_are_asked_for():
    code = GOOD + "\nUse it like this: config = {'the': 1, 'and': 2} and then call the function with it."
    assert check_quality(code, T) is None
    assert check_quality(code, QualityThresholds(min_words=20, c4_curly_brace=True)) == "c4_curly_brace"


def test_cjk_words_are_counted_by_character():
    text = "日本語の文章です。" * 10
    assert len(words_of("日本語")) == 3
    assert check_quality(text, QualityThresholds(min_words=20, min_stop_words=2)) != "gopher_stop_words"


def test_emoji_only_document_is_dropped_with_a_reason():
    assert check_quality("🎉 " * 100, T) in ("gopher_mean_word_length", "gopher_alpha_words")
