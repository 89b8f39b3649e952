"""Text validation and the model's tokenizer."""

import pytest

from reviewserve.model.text import EmptyText, InvalidText, TextTooLong, normalize, tokenize, validate_text


def test_valid_text_is_returned_unchanged() -> None:
    assert validate_text("  fine phone ", 100) == "  fine phone "


@pytest.mark.parametrize("text", ["", " ", "\t\n", "\u00a0\u2003"])
def test_empty_or_whitespace_is_refused(text: str) -> None:
    with pytest.raises(EmptyText, match="empty"):
        validate_text(text, 100)


def test_too_long_is_refused_with_the_limit_named() -> None:
    with pytest.raises(TextTooLong, match="11 characters; the limit is 10"):
        validate_text("x" * 11, 10)
    assert validate_text("x" * 10, 10)


@pytest.mark.parametrize("value", [None, 3, ["a"], {"a": 1}])
def test_non_strings_are_refused(value: object) -> None:
    with pytest.raises(InvalidText, match="must be a string"):
        validate_text(value, 10)


def test_contractions_are_split_like_the_training_text() -> None:
    assert normalize("It DOESN'T work") == "it does n't work"


def test_negation_scope_ends_at_punctuation() -> None:
    assert tokenize("Not good, but fine!") == ["not", "NOT_good", ",", "but", "fine", "!"]
    assert tokenize("I don't like it") == ["i", "do", "n't", "NOT_like", "NOT_it"]


def test_documented_not_blank_pattern_agrees_with_validation_for_every_code_point() -> None:
    import re
    import sys

    from reviewserve.model.text import NOT_BLANK_PATTERN

    pattern = re.compile(NOT_BLANK_PATTERN)
    disagree = [c for c in range(sys.maxunicode + 1) if bool(pattern.search(chr(c))) == chr(c).isspace()]
    assert disagree == []


def test_can_not_is_written_as_one_word_like_the_training_text() -> None:
    assert normalize("I Can Not believe it, she can't") == "i cannot believe it, she ca n't"


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Never again; fine", ["never", "NOT_again", ";", "fine"]),
        ("no way... ok?", ["no", "NOT_way", "...", "ok", "?"]),
        ("without it: good", ["without", "NOT_it", ":", "good"]),
        ("it's great 100%", ["it's", "great", "100"]),
        ("", []),
    ],
)
def test_tokens_and_negation_scopes(text: str, tokens: list[str]) -> None:
    assert tokenize(text) == tokens


def test_validation_messages_name_the_review() -> None:
    with pytest.raises(InvalidText, match=r"^review 3 must be a string, got int$"):
        validate_text(3, 10, where="review 3")
    with pytest.raises(EmptyText, match=r"^review 2 is empty or only whitespace$"):
        validate_text(" ", 10, where="review 2")
    with pytest.raises(TextTooLong, match=r"^review has 11 characters; the limit is 10$"):
        validate_text("x" * 11, 10)
    assert (InvalidText.code, EmptyText.code, TextTooLong.code) == ("invalid_text", "empty_review", "review_too_long")
