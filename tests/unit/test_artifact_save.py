"""Saving an artifact: the card describes exactly the file written, and the pair loads back verified."""

from __future__ import annotations

import hashlib
import json
import platform
import zipfile
from pathlib import Path

import numpy as np
import sklearn
import skops
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from reviewserve.model.artifact import DataFile, load_verified, read_card, save, sha256_file


def _tiny() -> Pipeline:
    return Pipeline([("clf", LogisticRegression().fit(np.array([[0.0], [1.0]]), np.array([0, 1])))])


def test_save_writes_a_card_that_describes_the_file(tmp_path: Path) -> None:
    out = tmp_path / "m" / "3"  # parents are created
    files = [DataFile(path="train.tsv", sha256="a" * 64, rows=2)]
    card = save(
        _tiny(),
        out,
        name="tiny",
        version="3",
        labels=["negative", "positive"],
        positive_label="positive",
        training_files=files,
        training_params={"C": 1.0},
        description="two points",
    )
    data = (out / "model.skops").read_bytes()
    assert card.model_file == "model.skops"
    assert card.model_sha256 == hashlib.sha256(data).hexdigest() == sha256_file(out / "model.skops")
    assert card.model_bytes == len(data)
    assert (card.sklearn_version, card.skops_version) == (sklearn.__version__, skops.__version__)
    assert card.python_version == platform.python_version()
    assert (card.name, card.version, card.description, card.training_params) == ("tiny", "3", "two points", {"C": 1.0})
    assert card.training_files == files
    assert (card.labels, card.positive_label) == (["negative", "positive"], "positive")
    assert card.created.microsecond == 0 and card.created.tzinfo is not None
    with zipfile.ZipFile(out / "model.skops") as archive:
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_DEFLATED}
    # the card on disk is that card, pretty-printed, and the pair loads back through the verified path
    text = (out / "card.json").read_text()
    assert text == card.model_dump_json(indent=2) + "\n" and json.loads(text)["name"] == "tiny"
    assert read_card(out) == card
    estimator, loaded = load_verified(out)
    assert loaded == card and estimator.predict_proba(np.array([[1.0]])).shape == (1, 2)


def test_sha256_of_a_file_larger_than_one_read(tmp_path: Path) -> None:
    big = tmp_path / "big"
    content = bytes(range(256)) * 9000  # > 2 MiB: several chunks
    big.write_bytes(content)
    assert sha256_file(big) == hashlib.sha256(content).hexdigest()


def test_saving_again_into_the_same_folder_replaces_the_pair(tmp_path: Path) -> None:
    common = {"labels": ["negative", "positive"], "positive_label": "positive", "training_files": []}
    first = save(_tiny(), tmp_path, name="tiny", version="1", training_params={}, **common)
    second = save(_tiny(), tmp_path, name="tiny", version="2", training_params={"C": 2.0}, **common)
    assert second.description == "" and second.version == "2"
    assert read_card(tmp_path) == second != first
    assert load_verified(tmp_path)[1] == second
