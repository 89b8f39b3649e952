"""Streaming predictions: producers push reviews into a stream, consumer groups score them.

A thin adapter around the one :class:`~reviewserve.model.Predictor`: ``broker`` is the small
engine interface, ``redis_broker`` its Redis Streams implementation, ``codec`` turns a message
into a review text, ``producer``/``consumer`` are the two loops, ``sinks`` where results go,
``health`` the consumer's HTTP port (``/healthz``, ``/readyz``, ``/metrics``).
"""

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
DEFAULT_STREAM = "reviews"
DEFAULT_RESULTS = "predictions"
DEFAULT_DEAD_LETTER = "reviews:dead"
REVIEW_FIELD = "review"
