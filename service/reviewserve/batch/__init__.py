"""Batch scoring: a thin adapter that reads reviews from SQL or files, calls the Predictor, writes predictions.

``job.run_job`` is the loop (source chunk -> Predictor -> sink, commit per chunk); ``sql`` and ``files``
are the two kinds of source/sink; ``shard`` splits the rows between parallel jobs; ``progress`` and
``pushgateway`` report a run.
"""

from reviewserve.batch.job import EXIT_FAILED, EXIT_OK, EXIT_ROWS_FAILED, Summary, run_job

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_ROWS_FAILED", "Summary", "run_job"]
