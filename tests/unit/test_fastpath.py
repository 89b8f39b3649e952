"""The exact fast path gives the pipeline's own labels and probabilities, and steps aside when it cannot."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from reviewserve.model import Predictor
from reviewserve.model.data import read_files
from reviewserve.model.fastpath import build_scorer
from reviewserve.model.predictor import FAST_PATH_MAX_TEXTS
from tests.conftest import shared_file

TOLERANCE = 1e-9
# Edge cases the held-out sets lack: nothing in the vocabulary, only punctuation, repeats, negation, non-ASCII.
ODD_TEXTS = [
    "qqqq zzzz xxxx",
    "!!!",
    "good good good good good good good good",
    "not good, not bad, never again",
    "Ça marche très bien 👍",
    "I didn't like it. It wasn't good and I can't recommend it.",
    "a",
    "x" * 5000,
]


@pytest.fixture(scope="module")
def predictor(model_dir: Path) -> Predictor:
    """The committed model, fast path on."""
    loaded = Predictor.load(model_dir)
    assert loaded.scorer is not None, "the committed model's shape must be covered by the fast path"
    return loaded


def _assert_same(predictor: Predictor, texts: list[str]) -> None:
    expected = predictor.estimator.predict_proba(texts)
    labels = [predictor.labels[i] for i in expected.argmax(axis=1)]
    for batch in ([texts[i : i + 32] for i in range(0, len(texts), 32)], [[t] for t in texts]):
        got = [p for chunk in batch for p in predictor.predict(chunk)]
        assert [p.label for p in got] == labels
        positive = np.array([p.positive_probability for p in got])
        assert np.abs(positive - expected[:, predictor.positive_index]).max() <= TOLERANCE
        best = np.array([p.probability for p in got])
        assert np.abs(best - expected.max(axis=1)).max() <= TOLERANCE


def test_fast_path_equals_pipeline_on_odd_texts(predictor: Predictor) -> None:
    _assert_same(predictor, ODD_TEXTS)


@pytest.mark.parametrize("name", ["amazon_cells_labelled.txt", "yelp_labelled.txt"])
def test_fast_path_equals_pipeline_on_every_held_out_sentence(predictor: Predictor, name: str) -> None:
    texts = list(read_files([shared_file("uci-sentiment", name)]).texts)
    _assert_same(predictor, texts)


def test_scorer_matrix_matches_predict_proba(predictor: Predictor) -> None:
    scorer = predictor.scorer
    assert scorer is not None
    texts = ["great phone", "awful", *ODD_TEXTS]
    np.testing.assert_allclose(
        scorer.predict_proba(texts), predictor.estimator.predict_proba(texts), rtol=0, atol=TOLERANCE
    )


def test_large_batches_use_the_pipeline(predictor: Predictor, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    scorer = predictor.scorer
    assert scorer is not None
    monkeypatch.setattr(scorer, "predict_proba", lambda texts: calls.append(len(texts)))  # must not be reached
    texts = ["fine"] * (FAST_PATH_MAX_TEXTS + 1)
    assert len(predictor.predict(texts)) == len(texts)
    assert calls == []


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda v: setattr(v, "norm", "l1"), "words"),
        (lambda v: setattr(v, "binary", True), "chars"),
        (lambda v: setattr(v, "use_idf", False), "words"),
    ],
)
def test_uncovered_vectorizer_options_fall_back(predictor: Predictor, change, where: str) -> None:
    estimator = copy.deepcopy(predictor.estimator)
    change(dict(estimator.named_steps["features"].transformer_list)[where])
    assert build_scorer(estimator) is None
    fallback = Predictor(estimator, predictor.card)
    assert fallback.scorer is None
    expected = estimator.predict_proba(["great phone"])[0]
    got = fallback.predict(["great phone"])[0]
    assert got.positive_probability == pytest.approx(expected[predictor.positive_index], abs=0)


def test_other_pipeline_shapes_fall_back(predictor: Predictor) -> None:
    weighted = copy.deepcopy(predictor.estimator)
    weighted.named_steps["features"].transformer_weights = {"words": 2.0, "chars": 1.0}
    assert build_scorer(weighted) is None
    assert build_scorer(predictor.estimator.named_steps["classifier"]) is None
    assert build_scorer(object()) is None
