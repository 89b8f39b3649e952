"""Model artifact, text handling, the Predictor, training and evaluation."""

from reviewserve.model.artifact import Card, ModelLoadError
from reviewserve.model.predictor import Prediction, Predictor
from reviewserve.model.text import EmptyText, InvalidText, TextTooLong

__all__ = ["Card", "EmptyText", "InvalidText", "ModelLoadError", "Prediction", "Predictor", "TextTooLong"]
