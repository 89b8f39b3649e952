"""What a scored row becomes, for every sink: one :class:`RowResult` per input row, in order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reviewserve.model import InvalidText, Prediction, Predictor
from reviewserve.model.text import validate_text

STATUS_OK = "ok"
STATUS_ERROR = "error"


@dataclass(frozen=True, slots=True)
class RowResult:
    """A row's outcome: a prediction (status ``ok``) or the reason it could not be scored (``error``)."""

    status: str
    label: str | None = None
    probability: float | None = None
    positive_probability: float | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A row the source could read but not turn into text (e.g. a line that is not JSON): an error row."""

    reason: str


def _check(text: object, max_chars: int) -> str | RowResult:
    if isinstance(text, Unreadable):
        return RowResult(STATUS_ERROR, error=text.reason)
    if isinstance(text, bytes | bytearray | memoryview):
        return RowResult(STATUS_ERROR, error="invalid_text: the stored value is not UTF-8 text")
    if text is None:
        return RowResult(STATUS_ERROR, error="null_review: the text is NULL")
    try:
        return validate_text(text, max_chars)
    except InvalidText as exc:
        return RowResult(STATUS_ERROR, error=f"{exc.code}: {exc}")


def _ok(prediction: Prediction) -> RowResult:
    return RowResult(STATUS_OK, prediction.label, prediction.probability, prediction.positive_probability)


def score_texts(predictor: Predictor, texts: Sequence[object]) -> list[RowResult]:
    """Score ``texts`` with one vectorised ``predictor.predict`` call; bad rows become ``error`` results.

    Each row is validated here first (NULL, not text, empty, too long), so one bad row never stops the
    others. If the model still fails on the valid rows, they are retried one by one and only the
    rows the model cannot take are marked ``model_error``.
    """
    checked = [_check(text, predictor.max_chars) for text in texts]
    valid = [(i, t) for i, t in enumerate(checked) if isinstance(t, str)]
    results: list[RowResult | None] = [c if isinstance(c, RowResult) else None for c in checked]
    if valid:
        try:
            predictions = predictor.predict([t for _, t in valid])
            for (i, _), prediction in zip(valid, predictions, strict=True):
                results[i] = _ok(prediction)
        except Exception:  # the model refused the batch: find the rows it cannot take
            for i, text in valid:
                try:
                    results[i] = _ok(predictor.predict([text])[0])
                except Exception as exc:
                    results[i] = RowResult(STATUS_ERROR, error=f"model_error: {type(exc).__name__}: {exc}")
    return [r for r in results if r is not None]
