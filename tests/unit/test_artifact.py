"""Model artifact: verified before deserialisation, refused on any mismatch."""

import json
import zipfile
from pathlib import Path

import pytest
import skops.io as sio
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from reviewserve.model import ModelLoadError, Predictor
from reviewserve.model.artifact import load_verified, sha256_file


def _edit_card(model_dir: Path, **changes: object) -> None:
    card_path = model_dir / "card.json"
    card = json.loads(card_path.read_text())
    card.update(changes)
    card_path.write_text(json.dumps(card))


def test_committed_model_loads_and_predicts(model_dir: Path) -> None:
    predictor = Predictor.load(model_dir)
    assert predictor.name == "review-sentiment"
    [pred] = predictor.predict(["This Chatbot is amazing"])
    assert pred.label == "positive" and 0.5 < pred.probability <= 1


def test_committed_model_is_small_enough_for_git(model_dir: Path) -> None:
    assert (model_dir / "model.skops").stat().st_size <= 20 * 1024 * 1024


def test_tampered_file_is_refused_before_loading(model_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with (model_copy / "model.skops").open("ab") as handle:
        handle.write(b"\0")
    loads: list[object] = []
    monkeypatch.setattr(sio, "load", lambda *a, **k: loads.append(a))
    monkeypatch.setattr(sio, "loads", lambda *a, **k: loads.append(a))
    monkeypatch.setattr(sio, "get_untrusted_types", lambda *a, **k: loads.append(a))
    with pytest.raises(ModelLoadError, match=r"sha256 .* but its card says"):
        load_verified(model_copy)
    assert loads == [], "the file must not be deserialised when its hash does not match"


def test_other_sklearn_version_is_refused(model_copy: Path) -> None:
    _edit_card(model_copy, sklearn_version="0.24.2")
    with pytest.raises(ModelLoadError, match=r"saved with scikit-learn 0\.24\.2"):
        load_verified(model_copy)


def test_missing_card_and_invalid_card(model_copy: Path) -> None:
    _edit_card(model_copy, model_sha256="not-a-hash")
    with pytest.raises(ModelLoadError, match="invalid"):
        load_verified(model_copy)
    (model_copy / "card.json").unlink()
    with pytest.raises(ModelLoadError, match="no model card"):
        load_verified(model_copy)


def test_types_outside_the_allow_list_are_refused_even_with_a_matching_hash(model_copy: Path) -> None:
    # A file whose card was forged to match: the allow-list still stops it from running code.
    import os

    evil = Pipeline([("run", FunctionTransformer(os.system))])
    sio.dump(evil, model_copy / "model.skops", compression=zipfile.ZIP_DEFLATED)
    _edit_card(model_copy, model_sha256=sha256_file(model_copy / "model.skops"))
    with pytest.raises(ModelLoadError, match=r"outside the allow-list: .*system"):
        load_verified(model_copy)


def test_missing_model_file_is_a_clear_refusal(model_copy: Path) -> None:
    (model_copy / "model.skops").unlink()
    with pytest.raises(ModelLoadError, match="cannot be read"):
        load_verified(model_copy)


def test_hash_mismatch_message_names_the_file_and_both_hashes(model_copy: Path) -> None:
    import re

    with (model_copy / "model.skops").open("ab") as handle:
        handle.write(b"\0")
    path = re.escape(str(model_copy / "model.skops"))
    with pytest.raises(ModelLoadError) as caught:
        load_verified(model_copy)
    assert re.fullmatch(
        rf"model file {path} has sha256 [0-9a-f]{{64}} but its card says [0-9a-f]{{64}}: "
        "refusing to load a file that is not the one the card describes",
        str(caught.value),
    ), str(caught.value)
