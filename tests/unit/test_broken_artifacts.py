"""Every way a model artifact can be broken ends as a refused model with a clear reason, never a raise.

The model file's card is re-signed (sha256 updated) for each broken file, so the damage gets past the
integrity check and reaches the deserialiser: that is the path that used to raise out of ``create_app``.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from reviewserve.model import ModelLoadError, Predictor
from reviewserve.model.artifact import load_verified, sha256_file
from reviewserve.settings import Settings
from reviewserve.web.app import create_app, load_predictor


def _edit_card(model_dir: Path, **changes: object) -> None:
    card_path = model_dir / "card.json"
    card = json.loads(card_path.read_text())
    card.update(changes)
    card_path.write_text(json.dumps(card))


def _drop_card_field(model_dir: Path, field: str) -> None:
    card_path = model_dir / "card.json"
    card = json.loads(card_path.read_text())
    del card[field]
    card_path.write_text(json.dumps(card))


def _replace_model(model_dir: Path, data: bytes) -> None:
    """Write ``data`` as the model file and re-sign the card so the sha256 check passes."""
    (model_dir / "model.skops").write_bytes(data)
    _edit_card(model_dir, model_sha256=sha256_file(model_dir / "model.skops"), model_bytes=len(data))


def _zip(**members: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _truncated(d: Path) -> None:
    _replace_model(d, (d / "model.skops").read_bytes()[:50_000])


def _schema_of_committed_model(d: Path) -> dict:
    with zipfile.ZipFile(d / "model.skops") as archive:
        return json.loads(archive.read("schema.json"))


def _unknown_type(d: Path) -> None:
    schema = _schema_of_committed_model(d)
    schema["__module__"], schema["__class__"] = "no_such_package.models", "Backdoor"
    with zipfile.ZipFile(d / "model.skops") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["schema.json"] = json.dumps(schema).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    _replace_model(d, buffer.getvalue())


def _arrays_missing(d: Path) -> None:
    # The schema (all trusted types) passes the allow-list scan; the arrays it points to are gone.
    _replace_model(d, _zip(**{"schema.json": json.dumps(_schema_of_committed_model(d))}))


def _cannot_score_text(d: Path) -> None:
    # Only trusted types, two classes like the card, but fitted on numbers: it loads and cannot read a review.
    numeric = Pipeline([("clf", LogisticRegression().fit(np.array([[0.0], [1.0]]), np.array([0, 1])))])
    _replace_model(d, sio.dumps(numeric))


def _unfitted(d: Path) -> None:
    _replace_model(d, sio.dumps(Pipeline([("clf", LogisticRegression())])))


def _three_classes(d: Path) -> None:
    x = np.array([[0.0], [1.0], [2.0]])
    _replace_model(d, sio.dumps(Pipeline([("clf", LogisticRegression().fit(x, np.array([0, 1, 2])))])))


BROKEN: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated": (_truncated, r"is not a readable skops archive: BadZipFile"),
    "not a zip": (lambda d: _replace_model(d, b"just some bytes, " * 40), r"not a readable skops archive: BadZipFile"),
    "empty file": (lambda d: _replace_model(d, b""), r"model file .*model\.skops is empty"),
    "wrong member": (
        lambda d: _replace_model(d, _zip(**{"model.pkl": "x"})),
        r"not a readable skops archive: KeyError: .*schema\.json",
    ),
    "schema not json": (
        lambda d: _replace_model(d, _zip(**{"schema.json": "{nope"})),
        r"not a readable skops archive: JSONDecodeError",
    ),
    "schema not an object": (
        lambda d: _replace_model(d, _zip(**{"schema.json": "[1, 2]"})),
        r"not a readable skops archive: AttributeError",
    ),
    "unknown type": (_unknown_type, r"outside the allow-list: \['no_such_package\.models\.Backdoor'\]"),
    "arrays missing": (_arrays_missing, r"model\.skops is not a readable skops archive: KeyError: .*no item named"),
    "model cannot score text": (_cannot_score_text, r"review-sentiment:1 loaded but cannot score a review: ValueError"),
    "model has other classes than the card": (_three_classes, r"model has 3 classes but the card names"),
    "model never fitted": (_unfitted, r"^model has 0 classes but the card names \['negative', 'positive'\]$"),
    "card missing": (lambda d: (d / "card.json").unlink(), r"no model card at .*card\.json"),
    "card is a folder": (
        lambda d: ((d / "card.json").unlink(), (d / "card.json").mkdir()),
        r"model card .*card\.json cannot be read: .*Is a directory",
    ),
    "card not json": (lambda d: (d / "card.json").write_text("{"), r"model card .* is invalid: .*Invalid JSON"),
    "card not an object": (lambda d: (d / "card.json").write_text("[]"), r"model card .* is invalid"),
    "card without sha256": (
        lambda d: _drop_card_field(d, "model_sha256"),
        r"is invalid: .*model_sha256\s+Field required",
    ),
    "card without labels": (lambda d: _drop_card_field(d, "labels"), r"is invalid: .*labels\s+Field required"),
    "card labels not a list": (lambda d: _edit_card(d, labels="positive"), r"is invalid: .*labels\s+Input should be"),
    "card name not a string": (lambda d: _edit_card(d, name=7), r"is invalid: .*name\s+Input should be a valid string"),
    "card model_bytes not a number": (
        lambda d: _edit_card(d, model_bytes="big"),
        r"is invalid: .*model_bytes\s+Input should be a valid integer",
    ),
    "card sha256 not hex": (lambda d: _edit_card(d, model_sha256="abc"), r"is invalid: .*model_sha256\s+String should"),
    "card positive label unknown": (
        lambda d: _edit_card(d, positive_label="good"),
        r"positive_label 'good' is not one of the labels \['negative', 'positive'\]",
    ),
    "card labels repeated": (
        lambda d: _edit_card(d, labels=["positive", "positive"]),
        r"labels must be at least two distinct names",
    ),
    "card model_file outside the folder": (
        lambda d: _edit_card(d, model_file="../1/model.skops"),
        r"model_file\s+Value error, must be a file name inside the model folder, got '\.\./1/model\.skops'",
    ),
    "card model_file a folder": (
        lambda d: (_edit_card(d, model_file="evaluation")),
        r"model file .*evaluation named by the card cannot be read",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_artifact_is_refused_with_a_clear_reason(model_copy: Path, case: str) -> None:
    breaks, reason = BROKEN[case]
    breaks(model_copy)
    predictor, error = load_predictor(Settings(model_path=model_copy))
    assert predictor is None
    assert error is not None and re.search(reason, error, flags=re.DOTALL), error


@pytest.mark.parametrize("case", ["truncated", "wrong member", "card labels not a list", "model cannot score text"])
def test_broken_artifact_app_is_live_never_ready(model_copy: Path, case: str) -> None:
    BROKEN[case][0](model_copy)
    client = create_app(Settings(model_path=model_copy)).test_client()
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["reason"].startswith("model not loaded: ")
    answer = client.post("/predict", json={"review": "fine"})
    assert answer.status_code == 503 and answer.get_json()["error"]["code"] == "model_not_ready"


def test_deserialiser_errors_are_model_load_errors(model_copy: Path) -> None:
    _truncated(model_copy)
    with pytest.raises(ModelLoadError, match="not a readable skops archive"):
        load_verified(model_copy)
    with pytest.raises(ModelLoadError):
        Predictor.load(model_copy)


def test_an_unexpected_loader_failure_still_refuses_the_model(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Last line of defence: whatever a future loader raises, the server stays up and says why.
    def explode(*args: object, **kwargs: object) -> None:
        raise MemoryError("out of memory while reading the model")

    monkeypatch.setattr(Predictor, "load", explode)
    predictor, error = load_predictor(Settings(model_path=model_dir))
    assert predictor is None
    assert error == f"model {model_dir} could not be loaded: MemoryError: out of memory while reading the model"
    [record] = [r for r in caplog.records if r.getMessage() == "model refused"]
    assert record.exc_info is not None and record.reason == error
