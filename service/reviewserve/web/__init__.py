"""The web service: a thin HTTP adapter (Flask) over the one Predictor."""
