"""The model artifact on disk: a skops file plus a JSON card, and the only code that loads or saves it.

Loading order matters for safety: the card (plain JSON) is read first, the model file's sha256 is
checked against it and the scikit-learn version compared, and only then is the file deserialised,
with skops, which refuses any type outside :data:`TRUSTED_TYPES` instead of executing it as pickle would.
"""

from __future__ import annotations

import hashlib
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

import sklearn
import skops
import skops.io as sio
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

CARD_FILE = "card.json"
MODEL_FILE = "model.skops"

# Non-builtin types our pipeline is made of. skops trusts numpy/scipy/sklearn basics itself;
# these are the rest. Anything else in a file is refused, whatever its card says.
TRUSTED_TYPES: tuple[str, ...] = (
    "reviewserve.model.text.normalize",
    "reviewserve.model.text.tokenize",
    "collections.defaultdict",
    "builtins.int",
    "builtins.float",
    "numpy.float64",
    "numpy.int64",
    "numpy.dtype",
    "numpy.ndarray",
    "scipy.sparse._csr.csr_matrix",
    "reviewserve.model.vectorizer.CompactTfidfVectorizer",
    "sklearn.feature_extraction.text.TfidfTransformer",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.pipeline.FeatureUnion",
    "sklearn.pipeline.Pipeline",
)


class ModelLoadError(RuntimeError):
    """The artifact is missing, does not match its card, or was made for another scikit-learn."""


class DataFile(BaseModel):
    """One training or evaluation file, pinned by content."""

    path: str
    sha256: str
    rows: int


class Card(BaseModel):
    """Machine-readable model card stored as ``card.json`` next to the model file."""

    name: str
    version: str
    created: datetime
    description: str = ""
    model_file: str = MODEL_FILE
    model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    model_bytes: int
    sklearn_version: str
    skops_version: str
    python_version: str
    labels: list[str]
    positive_label: str
    training_files: list[DataFile]
    training_params: dict[str, Any] = {}
    metrics: dict[str, dict[str, float]] = {}
    evaluation_files: list[DataFile] = []

    @field_validator("model_file")
    @classmethod
    def _plain_file_name(cls, value: str) -> str:
        # The model file lives next to its card: a path could point the verified loader anywhere.
        if not value or Path(value).name != value or value in (".", ".."):
            raise ValueError(f"must be a file name inside the model folder, got {value!r}")
        return value

    @model_validator(mode="after")
    def _positive_label_is_a_label(self) -> Card:
        if len(set(self.labels)) != len(self.labels) or len(self.labels) < 2:
            raise ValueError(f"labels must be at least two distinct names, got {self.labels}")
        if self.positive_label not in self.labels:
            raise ValueError(f"positive_label {self.positive_label!r} is not one of the labels {self.labels}")
        return self


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_card(model_dir: Path) -> Card:
    """Parse and validate ``card.json`` in ``model_dir``."""
    card_path = model_dir / CARD_FILE
    try:
        return Card.model_validate_json(card_path.read_bytes())
    except FileNotFoundError as exc:
        raise ModelLoadError(
            f"no model card at {card_path}: point MODEL_PATH (or the command's --model / --model-path) "
            "at a model folder holding card.json"
        ) from exc
    except OSError as exc:
        raise ModelLoadError(f"model card {card_path} cannot be read: {exc}") from exc
    except ValidationError as exc:
        raise ModelLoadError(f"model card {card_path} is invalid: {exc}") from exc


def write_card(model_dir: Path, card: Card) -> None:
    """Write ``card.json`` (pretty, stable key order)."""
    (model_dir / CARD_FILE).write_text(card.model_dump_json(indent=2) + "\n")


def verify(card: Card, data: bytes, source: Path) -> None:
    """Check model bytes against their card (sha256, scikit-learn version)."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != card.model_sha256:
        raise ModelLoadError(
            f"model file {source} has sha256 {actual} but its card says {card.model_sha256}: "
            "refusing to load a file that is not the one the card describes"
        )
    if card.sklearn_version != sklearn.__version__:
        raise ModelLoadError(
            f"model {card.name}:{card.version} was saved with scikit-learn {card.sklearn_version}; "
            f"this environment has {sklearn.__version__}. Install the card's version or retrain."
        )


def load_verified(model_dir: Path, expected_sha256: str = "") -> tuple[Any, Card]:
    """Read the card, verify the file, then deserialise it with skops' type allow-list.

    The file is read once: the bytes that were hashed are the bytes that are deserialised, so a file
    swapped between the check and the load cannot slip through. ``expected_sha256`` (MODEL_SHA256) pins
    the content from outside: a card and file replaced together in a store are refused too.
    """
    model_dir = Path(model_dir)
    card = read_card(model_dir)
    model_path = model_dir / card.model_file
    try:
        data = model_path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"model file {model_path} named by the card cannot be read: {exc}") from exc
    verify(card, data, model_path)
    if expected_sha256 and card.model_sha256 != expected_sha256:
        raise ModelLoadError(
            f"model file {model_path} has sha256 {card.model_sha256} but MODEL_SHA256 pins {expected_sha256}: "
            "refusing a model other than the pinned one"
        )
    return deserialise(data, model_path), card


def deserialise(data: bytes, source: Path) -> Any:
    """Deserialise verified skops bytes, refusing types outside :data:`TRUSTED_TYPES`.

    Every way the bytes can fail to be a skops archive of trusted types ends as :class:`ModelLoadError`:
    a file can match its card and still be broken (truncated before the card was written, not a zip,
    no schema inside), and a loader error must refuse the model, never crash the server.
    """
    if not data:
        raise ModelLoadError(f"model file {source} is empty")
    try:
        found = sio.get_untrusted_types(data=data)
    except Exception as exc:  # zipfile, json and skops each raise their own types for a malformed archive
        raise ModelLoadError(
            f"model file {source} is not a readable skops archive: {type(exc).__name__}: {exc}"
        ) from exc
    untrusted = [t for t in found if t not in TRUSTED_TYPES]
    if untrusted:
        raise ModelLoadError(f"model file {source} contains types outside the allow-list: {untrusted}")
    try:
        return sio.loads(data, trusted=list(TRUSTED_TYPES))
    except Exception as exc:  # skops raises several types for malformed files
        raise ModelLoadError(f"model file {source} could not be read: {type(exc).__name__}: {exc}") from exc


def save(
    estimator: Any,
    model_dir: Path,
    *,
    name: str,
    version: str,
    labels: list[str],
    positive_label: str,
    training_files: list[DataFile],
    training_params: dict[str, Any],
    description: str = "",
) -> Card:
    """Save ``estimator`` with skops and write its card; returns the card."""
    import platform

    model_dir.mkdir(parents=True, exist_ok=True)
    model_path = model_dir / MODEL_FILE
    sio.dump(estimator, model_path, compression=zipfile.ZIP_DEFLATED, compresslevel=9)
    card = Card(
        name=name,
        version=version,
        created=datetime.now().astimezone().replace(microsecond=0),
        description=description,
        model_file=MODEL_FILE,
        model_sha256=sha256_file(model_path),
        model_bytes=model_path.stat().st_size,
        sklearn_version=sklearn.__version__,
        skops_version=skops.__version__,
        python_version=platform.python_version(),
        labels=labels,
        positive_label=positive_label,
        training_files=training_files,
        training_params=training_params,
    )
    write_card(model_dir, card)
    return card
