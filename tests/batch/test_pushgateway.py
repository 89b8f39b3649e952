"""The run's metrics pushed to Debian's real prometheus-pushgateway, read back from its /metrics."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.batch import servers
from tests.batch.conftest import make_reviews, review_texts, score_in_process

pytestmark = pytest.mark.slow


def gateway_samples(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """reviewserve_batch_* samples on the gateway, by name and label set."""
    text = requests.get(url + "/metrics", timeout=10).text
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("reviewserve_batch_"):
                labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "instance"))
                samples.setdefault(sample.name, {})[labels] = sample.value
    return samples


def test_a_run_pushes_its_metrics_and_a_failed_run_keeps_the_last_success(tmp_path: Path, sqlite_url: str) -> None:
    make_reviews(sqlite_url, [*enumerate(review_texts(40), start=1), (41, "")])
    with servers.pushgateway(tmp_path) as gateway:
        before = time.time()
        run = score_in_process("--source", sqlite_url, "--pushgateway", gateway)
        assert run.returncode == 3, run.stderr
        group = (("job", "reviewserve_score"), ("shard", "0/1"), ("source", "reviews"))
        samples = gateway_samples(gateway)
        assert samples["reviewserve_batch_rows_scored"][group] == 40
        assert samples["reviewserve_batch_rows_failed"][group] == 1
        assert samples["reviewserve_batch_rows_read"][group] == 41
        assert samples["reviewserve_batch_exit_code"][group] == 3
        assert samples["reviewserve_batch_duration_seconds"][group] > 0
        success = samples["reviewserve_batch_last_success_timestamp_seconds"][group]
        assert before <= success <= time.time()

        (tmp_path / "reviews.db").unlink()  # the next night the table is gone: the run fails
        failed = score_in_process("--source", sqlite_url, "--pushgateway", gateway)
        assert failed.returncode == 1
        samples = gateway_samples(gateway)
        assert samples["reviewserve_batch_exit_code"][group] == 1
        assert samples["reviewserve_batch_rows_scored"][group] == 0
        assert samples["reviewserve_batch_last_success_timestamp_seconds"][group] == success  # kept: alert fires


def test_an_unreachable_gateway_does_not_change_the_result(sqlite_url: str) -> None:
    from tests.conftest import free_port

    make_reviews(sqlite_url, list(enumerate(review_texts(5), start=1)))
    run = score_in_process("--source", sqlite_url, "--pushgateway", f"http://127.0.0.1:{free_port()}")
    assert run.returncode == 0
    assert "pushgateway push failed" in run.stdout


def test_null_ids_are_pushed(tmp_path: Path, sqlite_url: str) -> None:
    from tests.batch.conftest import engine_for

    engine = engine_for(sqlite_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE reviews (id integer UNIQUE, text text)")
        conn.exec_driver_sql("INSERT INTO reviews VALUES (NULL, 'no id'), (NULL, 'none'), (1, 'great phone')")
    engine.dispose()
    with servers.pushgateway(tmp_path) as gateway:
        run = score_in_process("--source", sqlite_url, "--pushgateway", gateway)
        assert run.returncode == 0, run.stderr
        group = (("job", "reviewserve_score"), ("shard", "0/1"), ("source", "reviews"))
        samples = gateway_samples(gateway)
        assert samples["reviewserve_batch_null_ids"][group] == 2
        assert samples["reviewserve_batch_rows_read"][group] == 1
