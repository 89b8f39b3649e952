"""reviewserve: one review-sentiment predictor behind a web service, a batch job and stream consumers."""

__version__ = "1.0.0"
