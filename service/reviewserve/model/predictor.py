"""The one prediction code path: web, batch and stream all call :meth:`Predictor.predict`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reviewserve.model.artifact import Card, load_verified
from reviewserve.model.fastpath import LinearTextScorer, build_scorer
from reviewserve.model.text import validate_text

# Above this many texts scikit-learn's own vectorised path is as fast as the exact fast path (measured by
# `make bench`); below it scikit-learn's per-call overhead dominates (about 1 ms for one review).
FAST_PATH_MAX_TEXTS = 256


@dataclass(frozen=True, slots=True)
class Prediction:
    """A scored review: the label, its probability, and the positive-class probability."""

    label: str
    probability: float
    positive_probability: float


class Predictor:
    """A verified model plus its card; turns a list of texts into predictions in one vectorised call."""

    def __init__(
        self,
        estimator: Any,
        card: Card,
        max_chars: int = 5000,
        load_seconds: float = 0.0,
        fast_path: bool = True,
    ) -> None:
        self.estimator = estimator
        self.card = card
        self.max_chars = max_chars
        self.load_seconds = load_seconds
        classes = list(getattr(estimator, "classes_", []))
        if len(classes) != len(card.labels):
            raise ValueError(f"model has {len(classes)} classes but the card names {card.labels}")
        # classes_ are sorted training targets; the card's labels are in the same order.
        self.labels = list(card.labels)
        self.positive_index = self.labels.index(card.positive_label)
        # The same fitted objects, computed without scikit-learn's per-call overhead; None when the
        # pipeline's shape is not one the fast path covers exactly (then every call uses the pipeline).
        self.scorer: LinearTextScorer | None = build_scorer(estimator) if fast_path else None

    @classmethod
    def load(cls, model_dir: Path, max_chars: int = 5000, expected_sha256: str = "") -> Predictor:
        """Load and verify the artifact in ``model_dir`` (see :func:`load_verified`)."""
        started = time.perf_counter()
        estimator, card = load_verified(model_dir, expected_sha256)
        return cls(estimator, card, max_chars=max_chars, load_seconds=time.perf_counter() - started)

    @property
    def name(self) -> str:
        """Model name from the card."""
        return self.card.name

    @property
    def version(self) -> str:
        """Model version from the card."""
        return self.card.version

    def validate(self, texts: Sequence[object]) -> list[str]:
        """Validate every text (raises :class:`~reviewserve.model.text.InvalidText` naming the first bad one)."""
        if len(texts) == 1:
            return [validate_text(texts[0], self.max_chars)]
        return [validate_text(t, self.max_chars, where=f"review {i}") for i, t in enumerate(texts)]

    def predict(self, texts: Sequence[object]) -> list[Prediction]:
        """Score ``texts`` in order; raises ``InvalidText`` before scoring if any text is invalid."""
        valid = self.validate(texts)
        if not valid:
            return []
        if self.scorer is not None and len(valid) == 1:
            # The common single-review request: plain floats, no array set-up.
            second = self.scorer.probability_class1(valid[0])
            rows = [[1.0 - second, second]]
        else:
            rows = self.predict_proba(valid).tolist()
        results = []
        for row in rows:
            best = max(range(len(row)), key=row.__getitem__)  # the first highest, as numpy's argmax
            results.append(
                Prediction(
                    label=self.labels[best],
                    probability=row[best],
                    positive_probability=row[self.positive_index],
                )
            )
        return results

    def predict_proba(self, texts: Sequence[str]) -> Any:
        """Class probabilities of already validated texts: the exact fast path when it covers them."""
        if self.scorer is not None and len(texts) <= FAST_PATH_MAX_TEXTS:
            return self.scorer.predict_proba(texts)
        return self.estimator.predict_proba(texts)
