"""Settings from the environment."""

import pytest
from pydantic import ValidationError

from reviewserve.settings import Settings, usable_cpus


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PORT", "WORKERS", "MAX_REVIEWS", "LOG_LEVEL"):
        monkeypatch.delenv(var, raising=False)
    settings = Settings()
    assert settings.port == 9696 and settings.max_reviews == 64 and settings.log_level == "INFO"
    assert settings.workers == usable_cpus() >= 1


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "8080")
    monkeypatch.setenv("WORKERS", "3")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    settings = Settings()
    assert (settings.port, settings.workers, settings.log_level) == (8080, 3, "DEBUG")


def test_invalid_values_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "99999")
    with pytest.raises(ValidationError, match="port"):
        Settings()


def test_usable_cpus_follows_affinity_not_the_host_count() -> None:
    import subprocess
    import sys

    code = "from reviewserve.settings import usable_cpus; print(usable_cpus())"
    pinned = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code], capture_output=True, text=True)
    assert pinned.stdout.strip() == "1", pinned.stderr
