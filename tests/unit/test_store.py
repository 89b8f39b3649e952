"""The model store on a local folder store and its URI handling (no network; S3 is in tests/store)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reviewserve.model import ModelLoadError, Predictor
from reviewserve.model.store import (
    ModelStoreError,
    _scrub,
    fetch,
    is_remote,
    list_versions,
    open_predictor,
    push,
    redact,
)
from reviewserve.settings import Settings
from tests.modelversions import make_version, tamper


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("s3://bucket/models/m/1", "s3://bucket/models/m/1"),
        ("https://user:s3cret@models.example.com:8443/m/1?token=abc#x", "https://models.example.com:8443/m/1"),
        ("http://models.example.com/m/1?X-Amz-Signature=deadbeef", "http://models.example.com/m/1"),
        ("/srv/models/m/1", "/srv/models/m/1"),
    ],
)
def test_redact_drops_user_info_query_and_fragment(uri: str, shown: str) -> None:
    assert redact(uri) == shown


def test_scrub_removes_secrets_from_error_messages() -> None:
    uri = "https://user:s3cret@host/m/1?token=abc"
    message = _scrub(f"404 for {uri} (auth s3cret, query token=abc)", uri)
    assert "s3cret" not in message and "token=abc" not in message and "https://host/m/1" in message


def test_local_sources_are_not_remote() -> None:
    assert not is_remote("/srv/m/1") and not is_remote("file:///srv/m/1") and not is_remote("models/m/1")
    assert is_remote("s3://b/m/1") and is_remote("https://h/m/1")
    assert fetch("file:///srv/m/1", Path("/nonexistent")) == Path("/srv/m/1")


def test_gs_is_refused_with_the_s3_compatible_way(tmp_path: Path) -> None:
    with pytest.raises(ModelStoreError, match=r"storage\.googleapis\.com"):
        fetch("gs://bucket/m/1", tmp_path)


def test_push_and_list_on_a_folder_store(tmp_path: Path, model_dir: Path) -> None:
    store = tmp_path / "store"
    assert push(model_dir, str(store)) == f"{store}/review-sentiment/1"
    push(make_version(tmp_path / "v2", "2"), str(store))
    with pytest.raises(ModelStoreError, match="already exists"):
        push(model_dir, str(store))
    versions = list(list_versions(str(store)))
    assert [v["version"] for v in versions] == ["1", "2"]
    assert versions[0]["metrics"] == json.loads((model_dir / "card.json").read_text())["metrics"]


def test_push_refuses_a_card_name_that_is_not_a_folder_name(tmp_path: Path, model_dir: Path) -> None:
    bad = make_version(tmp_path / "bad", "../../etc")
    with pytest.raises(ModelStoreError, match="cannot be a store folder name"):
        push(bad, str(tmp_path / "store"))


def test_model_sha256_pins_the_content(model_dir: Path) -> None:
    card = json.loads((model_dir / "card.json").read_text())
    assert Predictor.load(model_dir, expected_sha256=card["model_sha256"]).version == "1"
    with pytest.raises(ModelLoadError, match="MODEL_SHA256 pins"):
        open_predictor(Settings(model_path=model_dir, model_sha256="a" * 64))


def test_a_tampered_local_model_is_refused_through_the_store(model_copy: Path) -> None:
    tamper(model_copy)
    with pytest.raises(ModelLoadError, match="refusing to load a file"):
        open_predictor(Settings(model_uri=str(model_copy)))


def test_settings_model_source_prefers_model_uri(model_dir: Path) -> None:
    assert Settings(model_path=model_dir).model_source == str(model_dir)
    assert Settings(model_path=model_dir, model_uri="s3://b/m/2").model_source == "s3://b/m/2"
