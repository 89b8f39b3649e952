"""An exact fast path for small inputs: the fitted pipeline's own arithmetic, without scikit-learn's per-call cost.

For one review, ``Pipeline.predict_proba`` spends about 1 ms building sparse matrices, checking inputs and
stacking the FeatureUnion's blocks; the features themselves take ~35 us. :class:`LinearTextScorer` computes
the same numbers directly from the fitted objects of the verified artifact: each vectorizer's own analyzer
(``build_analyzer()``: its preprocessor, tokenizer and n-grams), its vocabulary and idf weights, then the
logistic regression's coefficients and intercept:

    x_j   = tf_j * idf_j                       tf = 1 + log(count) when sublinear_tf, else count
    block = sum_j x_j * coef_j / ||x||_2       per vectorizer (TfidfVectorizer's l2 norm)
    p     = expit(intercept + sum of blocks)   binary LogisticRegression.predict_proba

Only a pipeline of exactly that shape is covered (:func:`build_scorer` returns ``None`` otherwise and the
caller uses the pipeline). A test checks labels and probabilities against ``predict_proba`` (within 1e-9)
on every held-out sentence.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline


@dataclass(frozen=True, slots=True)
class _Block:
    """One TF-IDF vectorizer's part of the linear model: its analyzer, vocabulary, idf and idf * coef."""

    analyzer: Callable[[str], list[str]]
    vocabulary: dict[str, int]  # the fitted vectorizer's own dict (shared with it, not copied)
    idf: np.ndarray
    idf_coef: np.ndarray
    idf_list: list[float]  # the same two as Python floats: the one-text loop indexes them cheaply
    idf_coef_list: list[float]
    sublinear_tf: bool

    def score_one(self, text: str) -> float:
        """This block's contribution to the decision function for one text (a plain loop: no array set-up)."""
        # dict.get through map with a default of -1: the per-token lookups stay in C, no Python-level filter.
        counts = Counter(map(self.vocabulary.get, self.analyzer(text), repeat(-1)))
        counts.pop(-1, None)  # out-of-vocabulary terms
        idf, idf_coef, log = self.idf_list, self.idf_coef_list, math.log
        dot = squares = 0.0
        for column, count in counts.items():
            tf = 1.0 + log(count) if self.sublinear_tf else float(count)
            value = tf * idf[column]
            squares += value * value
            dot += tf * idf_coef[column]
        return dot / math.sqrt(squares) if squares > 0.0 else 0.0

    def score_many(self, texts: Sequence[str], decision: np.ndarray) -> None:
        """Add this block's contribution for every text to ``decision`` (vectorised over all their terms)."""
        get, analyzer, width = self.vocabulary.get, self.analyzer, len(self.idf_list)
        columns: list[int] = []  # one per term occurrence, -1 when out of vocabulary (lookups stay in C)
        lengths: list[int] = []  # term occurrences per text
        for text in texts:
            before = len(columns)
            columns.extend(map(get, analyzer(text), repeat(-1)))
            lengths.append(len(columns) - before)
        column_array = np.asarray(columns, dtype=np.int64)
        row_array = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
        known = column_array >= 0
        if not known.any():
            return
        keys = row_array[known] * width + column_array[known]  # row * width + column per known occurrence
        unique, counts = np.unique(keys, return_counts=True)
        rows, columns = np.divmod(unique, width)
        tf = np.log(counts) + 1.0 if self.sublinear_tf else counts.astype(np.float64)
        values = tf * self.idf[columns]
        squares = np.bincount(rows, values * values, minlength=len(texts))
        dots = np.bincount(rows, tf * self.idf_coef[columns], minlength=len(texts))
        scored = squares > 0.0
        decision[scored] += dots[scored] / np.sqrt(squares[scored])


class LinearTextScorer:
    """``predict_proba`` of a TF-IDF + binary logistic regression pipeline, computed from its fitted parts."""

    def __init__(self, blocks: list[_Block], intercept: float) -> None:
        self._blocks = blocks
        self._intercept = intercept

    def probability_class1(self, text: str) -> float:
        """``predict_proba([text])[0, 1]`` (the second of ``classes_``) of the pipeline this scorer was built from."""
        decision = self._intercept + sum(block.score_one(text) for block in self._blocks)
        # scipy.special.expit for one float, in its numerically stable form.
        if decision >= 0:
            return 1.0 / (1.0 + math.exp(-decision))
        exp = math.exp(decision)
        return exp / (1.0 + exp)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Rows of ``[P(class 0), P(class 1)]`` in the pipeline's ``classes_`` order."""
        decision = np.full(len(texts), self._intercept)
        for block in self._blocks:
            block.score_many(texts, decision)
        positive = expit(decision)
        return np.column_stack([1.0 - positive, positive])


def _covered_vectorizer(vectorizer: Any) -> bool:
    # Exactly the TfidfVectorizer options the formula above implements; anything else takes the pipeline.
    return (
        isinstance(vectorizer, TfidfVectorizer)
        and vectorizer.norm == "l2"
        and vectorizer.use_idf
        and not vectorizer.binary
        and hasattr(vectorizer, "idf_")
        and hasattr(vectorizer, "vocabulary_")
        and np.dtype(vectorizer.dtype) == np.float64
    )


def build_scorer(estimator: Any) -> LinearTextScorer | None:
    """A :class:`LinearTextScorer` equal to ``estimator``, or ``None`` when its shape is not covered."""
    if not isinstance(estimator, Pipeline) or len(estimator.steps) != 2:
        return None
    features, classifier = estimator.steps[0][1], estimator.steps[1][1]
    if not isinstance(features, FeatureUnion) or not isinstance(classifier, LogisticRegression):
        return None
    if features.transformer_weights or len(getattr(classifier, "classes_", [])) != 2:
        return None
    if not hasattr(classifier, "coef_") or classifier.coef_.shape[0] != 1:
        return None
    active = [t for _, t in features.transformer_list if t not in ("drop", "passthrough")]
    if len(active) != len(features.transformer_list) or not all(_covered_vectorizer(v) for v in active):
        return None
    coef = classifier.coef_[0]
    blocks = []
    offset = 0
    for vectorizer in active:
        idf = vectorizer.idf_
        size = len(idf)
        idf = np.asarray(idf, dtype=np.float64)
        idf_coef = idf * coef[offset : offset + size]
        blocks.append(
            _Block(
                analyzer=vectorizer.build_analyzer(),
                vocabulary=vectorizer.vocabulary_,
                idf=idf,
                idf_coef=idf_coef,
                idf_list=idf.tolist(),
                idf_coef_list=idf_coef.tolist(),
                sublinear_tf=bool(vectorizer.sublinear_tf),
            )
        )
        offset += size
    if offset != coef.shape[0]:
        return None
    return LinearTextScorer(blocks, float(classifier.intercept_[0]))
