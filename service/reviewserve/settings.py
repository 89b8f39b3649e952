"""Typed settings read from the environment (12-factor), shared by every entry point.

Every field maps to an upper-case environment variable of the same name (``PORT``, ``WORKERS``...).
CLI flags of ``reviewserve serve`` write the same variables, so gunicorn, the app and its workers
all read one source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

BUNDLED_MODEL = Path("models/review-sentiment/1")
DEFAULT_METRICS_DIR = Path("/tmp/reviewserve-metrics")
DEFAULT_MODEL_CACHE_DIR = Path("/tmp/reviewserve-models")


def usable_cpus() -> int:
    """CPUs this process may really use: its affinity mask and cgroup CPU quota, not the host's count."""
    # joblib (a scikit-learn dependency) reads sched_getaffinity and the cgroup v1/v2 quota.
    from joblib import cpu_count

    return max(1, cpu_count(only_physical_cores=False))


def bundled_model_path() -> Path:
    """The committed model, found from wherever the command runs.

    It sits beside the package's source tree (a checkout with ``make install``, an editable install), so it
    is found there by absolute path; an installed wheel has no source tree, so the folder is then looked up
    in the working directory (the image's /app, where MODEL_PATH is set anyway).
    """
    source_tree = Path(__file__).resolve().parents[2] / BUNDLED_MODEL
    return source_tree if (source_tree / "card.json").is_file() else BUNDLED_MODEL


class Settings(BaseSettings):
    """Runtime configuration; defaults are documented in docs/configuration.md."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    host: str = Field("0.0.0.0", description="Address gunicorn binds to.")
    port: int = Field(9696, ge=1, le=65535, description="Port gunicorn listens on.")
    workers: int = Field(default_factory=usable_cpus, ge=1, description="gunicorn worker processes.")
    worker_class: Literal["gevent", "gthread"] = Field(
        "gevent", description="gunicorn worker type: gevent (reviewserve's tuned worker) or gthread."
    )
    worker_connections: int = Field(1000, ge=1, description="Open connections per gevent worker.")
    threads: int = Field(2, ge=1, le=64, description="Threads per gunicorn worker (gthread only).")
    model_path: Path = Field(
        default_factory=bundled_model_path, description="Model folder holding card.json and the model."
    )
    model_uri: str = Field(
        "",
        description="Where the model comes from: a local folder or an s3:// / https:// URL of a model folder "
        "(card.json + model file). Empty: MODEL_PATH.",
    )
    model_sha256: str = Field(
        "", pattern=r"^([0-9a-f]{64})?$", description="Expected sha256 of the model file (empty: no pin)."
    )
    model_cache_dir: Path = Field(DEFAULT_MODEL_CACHE_DIR, description="Folder remote models are downloaded into.")
    model_fetch_timeout: float = Field(30.0, gt=0, description="Seconds one download request may take.")
    model_retry_max_seconds: float = Field(
        60.0, ge=1, description="Longest wait between two attempts to load a model that failed (backoff from 1 s)."
    )
    track: str = Field(
        "stable",
        pattern=r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$",
        description="Deployment track (stable, canary...): the `track` label of the model and request metrics.",
    )
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest accepted request body (413 above).")
    max_reviews: int = Field(64, ge=1, description="Most reviews in one request (422 above).")
    max_review_chars: int = Field(5000, ge=1, description="Longest accepted review in characters (413 above).")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    prometheus_multiproc_dir: Path = Field(DEFAULT_METRICS_DIR, description="Multiprocess metrics folder.")
    timeout: int = Field(30, ge=1, description="gunicorn worker timeout, seconds.")
    graceful_timeout: int = Field(20, ge=0, description="Seconds in-flight requests get to finish on SIGTERM.")
    keepalive: int = Field(
        75,
        ge=0,
        description="Seconds a connection may send nothing (idle keep-alive, or stalled mid-request) before it "
        "is closed; above proxies' idle upstream keep-alive (ingress-nginx: 60 s).",
    )
    keepalive_requests: int = Field(
        1000, ge=0, description="Requests served on one connection before it is closed (0: no limit)."
    )
    shutdown_delay: float = Field(
        1.0, ge=0, description="Seconds between SIGTERM (readiness turns 503) and the start of the drain."
    )
    health_port: int = Field(
        9698,
        ge=0,
        le=65535,
        description="Port of the probes (/healthz, /readyz, /metrics) answered by the gunicorn master, "
        "whatever the request workers are doing (0: off).",
    )
    max_queue_ms: float = Field(
        20.0,
        ge=0,
        description="Shed a POST (503 overloaded) when its worker already has more than this many milliseconds "
        "of estimated work waiting (0: never shed).",
    )
    retry_after_seconds: int = Field(1, ge=0, description="Retry-After of a shed request's 503, seconds.")
    max_requests: int = Field(0, ge=0, description="Requests after which a worker is recycled (0: never).")
    max_requests_jitter: int = Field(1000, ge=0, description="Random spread on max_requests.")

    @property
    def model_source(self) -> str:
        """MODEL_URI when set, else MODEL_PATH: what the model store resolves."""
        return self.model_uri or str(self.model_path)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


def get_settings() -> Settings:
    """Read the settings from the current environment."""
    return Settings()
