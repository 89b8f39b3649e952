"""Fixtures of the model store tests: moto's S3 server (as the batch tests start it) and a bucket per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.batch import servers

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "store-test-key",
    "AWS_SECRET_ACCESS_KEY": "store-test-secret-do-not-log",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class S3:
    """A moto S3 endpoint and the environment that reaches it."""

    url: str

    @property
    def env(self) -> dict[str, str]:
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.url}

    def bucket(self) -> str:
        """Create a fresh bucket; return its s3:// URI."""
        import boto3

        name = f"models-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=self.url, **_boto_credentials()).create_bucket(Bucket=name)
        return f"s3://{name}"

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.url, **_boto_credentials())


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": CREDENTIALS["AWS_DEFAULT_REGION"],
    }


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3]:
    """moto's S3 server for the session (each test makes its own bucket)."""
    with servers.moto_s3() as url:
        yield S3(url)


@pytest.fixture
def s3(s3_server: S3, monkeypatch: pytest.MonkeyPatch) -> S3:
    """The S3 server, with this process's environment pointed at it (for in-process pushes)."""
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    return s3_server
