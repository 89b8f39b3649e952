"""Training: labelled files -> a TF-IDF (negation-aware words + characters) logistic regression pipeline."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from reviewserve.model import artifact
from reviewserve.model.data import LABELS, read_files
from reviewserve.model.text import normalize, tokenize
from reviewserve.model.vectorizer import CompactTfidfVectorizer

log = logging.getLogger(__name__)

DEFAULT_PARAMS: dict[str, Any] = {
    "word_ngrams": [1, 2],
    "char_ngrams": [2, 5],
    "min_df_words": 2,
    "min_df_chars": 3,
    "max_features": 100_000,
    "C": 4.0,
    "class_weight": "balanced",
}


def build_pipeline(params: dict[str, Any]) -> Pipeline:
    """The untrained pipeline for ``params`` (see :data:`DEFAULT_PARAMS`)."""
    words = CompactTfidfVectorizer(
        tokenizer=tokenize,
        lowercase=False,
        token_pattern=None,
        ngram_range=tuple(params["word_ngrams"]),
        min_df=params["min_df_words"],
        max_features=params["max_features"],
        sublinear_tf=True,
    )
    chars = CompactTfidfVectorizer(
        preprocessor=normalize,
        analyzer="char_wb",
        ngram_range=tuple(params["char_ngrams"]),
        min_df=params["min_df_chars"],
        max_features=params["max_features"],
        sublinear_tf=True,
    )
    return Pipeline(
        [
            ("features", FeatureUnion([("words", words), ("chars", chars)])),
            (
                "classifier",
                LogisticRegression(C=params["C"], class_weight=params["class_weight"], max_iter=3000),
            ),
        ]
    )


def train(
    data_files: list[Path],
    out_dir: Path,
    *,
    name: str = "review-sentiment",
    version: str = "1",
    params: dict[str, Any] | None = None,
    text_column: str = "text",
    label_column: str = "label",
) -> artifact.Card:
    """Train on ``data_files`` and save the model and its card in ``out_dir``."""
    params = {**DEFAULT_PARAMS, **(params or {})}
    data = read_files(data_files, text_column=text_column, label_column=label_column)
    if len(set(data.targets)) != 2:
        raise ValueError("training data needs both positive and negative examples")
    log.info("training on %d texts from %d file(s)", len(data), len(data.files))
    started = time.perf_counter()
    pipeline = build_pipeline(params)
    pipeline.fit(data.texts, data.targets)
    log.info("trained in %.1fs", time.perf_counter() - started)
    return artifact.save(
        pipeline,
        out_dir,
        name=name,
        version=version,
        labels=list(LABELS),
        positive_label="positive",
        training_files=data.files,
        training_params=params,
        description="English review sentiment: TF-IDF word (negation-marked) and character n-grams, "
        "logistic regression.",
    )
