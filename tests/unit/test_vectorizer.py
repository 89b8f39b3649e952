"""CompactTfidfVectorizer saves its vocabulary as one array and loads back the same vectorizer."""

from __future__ import annotations

import numpy as np
import skops.io as sio

from reviewserve.model.vectorizer import CompactTfidfVectorizer

DOCS = ["good phone good battery", "bad phone", "good screen", "bad bad battery"]


def test_saved_state_holds_the_terms_in_index_order() -> None:
    vectorizer = CompactTfidfVectorizer(min_df=2).fit(DOCS)
    state = vectorizer.__getstate__()
    assert "vocabulary_" not in state and "stop_words_" not in state
    terms = state["vocabulary_terms_"]
    assert isinstance(terms, np.ndarray) and terms.tolist() == ["bad", "battery", "good", "phone"]
    assert [vectorizer.vocabulary_[t] for t in terms.tolist()] == [0, 1, 2, 3]


def test_round_trip_through_skops_gives_the_same_vectorizer() -> None:
    vectorizer = CompactTfidfVectorizer(min_df=2).fit(DOCS)
    loaded = sio.loads(sio.dumps(vectorizer), trusted=["reviewserve.model.vectorizer.CompactTfidfVectorizer"])
    assert loaded.vocabulary_ == vectorizer.vocabulary_
    assert all(isinstance(term, str) for term in loaded.vocabulary_)
    assert not hasattr(loaded, "vocabulary_terms_")
    assert (loaded.transform(DOCS) != vectorizer.transform(DOCS)).nnz == 0


def test_an_unfitted_vectorizer_saves_without_a_vocabulary() -> None:
    state = CompactTfidfVectorizer().__getstate__()
    assert "vocabulary_terms_" not in state and "vocabulary_" not in state
    restored = CompactTfidfVectorizer()
    restored.__setstate__(state)
    assert not hasattr(restored, "vocabulary_")
