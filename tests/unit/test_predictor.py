"""Predictor: the one prediction path, checked directly (the API tests check it through HTTP)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reviewserve.model import EmptyText, InvalidText, Predictor, TextTooLong


@pytest.fixture(scope="module")
def predictor(model_dir: Path) -> Predictor:
    return Predictor.load(model_dir, max_chars=20)


def test_loaded_predictor_describes_its_model(predictor: Predictor) -> None:
    assert (predictor.name, predictor.version) == ("review-sentiment", "1")
    assert predictor.labels == ["negative", "positive"] and predictor.positive_index == 1
    assert predictor.max_chars == 20 and 0 < predictor.load_seconds < 60


def test_no_texts_no_predictions(predictor: Predictor) -> None:
    assert predictor.predict([]) == []


def test_texts_are_validated_before_scoring_with_their_position(predictor: Predictor) -> None:
    with pytest.raises(EmptyText, match=r"^review is empty"):
        predictor.predict([" "])
    with pytest.raises(EmptyText, match=r"^review 1 is empty"):
        predictor.predict(["fine", " "])
    with pytest.raises(TextTooLong, match=r"^review 2 has 21 characters; the limit is 20$"):
        predictor.predict(["fine", "ok", "x" * 21])
    with pytest.raises(InvalidText, match=r"^review 0 must be a string, got NoneType$"):
        predictor.predict([None, "ok"])
    assert predictor.validate(["a", "b"]) == ["a", "b"]


def test_each_prediction_is_internally_consistent(predictor: Predictor) -> None:
    for p in predictor.predict(["great", "awful", "fine I guess"]):
        assert p.probability >= 0.5
        expected = p.positive_probability if p.label == "positive" else 1 - p.positive_probability
        assert p.probability == pytest.approx(expected, abs=1e-12)


def test_defaults_are_the_documented_ones(model_dir: Path) -> None:
    loaded = Predictor.load(model_dir)
    assert loaded.max_chars == 5000  # MAX_REVIEW_CHARS default
    built = Predictor(loaded.estimator, loaded.card)
    assert (built.max_chars, built.load_seconds) == (5000, 0.0)
