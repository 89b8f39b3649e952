"""A stream consumer scoring with a model fetched from the model store (moto's S3 server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from reviewserve.cli import main
from tests.batch import servers
from tests.modelversions import make_version
from tests.store.conftest import S3
from tests.stream.conftest import Keys, Procs, reviews, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def moto() -> Iterator[S3]:
    with servers.moto_s3() as url:
        yield S3(url)


def test_consumer_scores_with_a_model_from_the_store(
    moto: S3, procs: Procs, r: redis.Redis, keys: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in moto.env.items():
        monkeypatch.setenv(key, value)
    pushed = CliRunner().invoke(main, ["model", "push", str(make_version(tmp_path / "v4", "4")), moto.bucket()])
    assert pushed.exit_code == 0, pushed.output
    consumer = procs.consumer(
        "c-store", MODEL_URI=pushed.stdout.strip(), MODEL_CACHE_DIR=str(tmp_path / "cache"), **moto.env
    )
    producer = procs.producer("p", reviews(20))
    assert producer.process.wait(timeout=60) == 0, producer.log()
    wait_until(lambda: r.xlen(keys.results) >= 20, 60, "20 results")
    assert {fields["model_version"] for _, fields in r.xrange(keys.results)} == {"4"}
    assert consumer.terminate() == 0, consumer.log()
