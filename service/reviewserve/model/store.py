"""The model store: where a model folder comes from, and the only code that knows.

A model source is a local folder (as always) or the URL of a model folder in object storage: ``s3://``
(any S3-compatible store: ``AWS_ENDPOINT_URL`` selects MinIO, Ceph, GCS's XML API...), ``https://`` or
``http://``. A remote folder is downloaded into a local cache (``MODEL_CACHE_DIR``): ``card.json`` first,
then the one model file the card names. The local copy then goes through exactly the verification of a
local folder (:func:`reviewserve.model.artifact.load_verified`). Credentials come from the environment
(``AWS_ACCESS_KEY_ID``... read by botocore); URIs are logged only through :func:`redact`.

A store is a folder of ``NAME/VERSION/`` model folders: :func:`push` adds one (never overwriting a
version), :func:`list_versions` reads the cards.

``gs://`` is not supported natively: gcsfs would add google-auth, google-cloud-storage's auth stack and
their dependencies to every image for what GCS's S3-compatible XML API already offers
(``AWS_ENDPOINT_URL=https://storage.googleapis.com`` with HMAC keys, ``MODEL_URI=s3://BUCKET/...``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from reviewserve.model.artifact import CARD_FILE, Card, ModelLoadError, load_verified, read_card

if TYPE_CHECKING:
    from reviewserve.model.predictor import Predictor
    from reviewserve.settings import Settings

log = logging.getLogger(__name__)

REMOTE_SCHEMES = ("s3", "http", "https")
# A store path segment: the card's name and version become folder names, so they must be plain.
SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ModelStoreError(ModelLoadError):
    """The store could not be read or written (network, credentials, a missing or existing version)."""


def scheme(source: str) -> str:
    """The URL scheme of ``source`` (lower case), "" for a local path."""
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", source)
    return match.group(1).lower() if match else ""


def is_remote(source: str) -> bool:
    """True when ``source`` is a URL the store downloads (not a local folder)."""
    return scheme(source) not in ("", "file")


def redact(source: str) -> str:
    """``source`` without user info, query and fragment: what may appear in logs and errors."""
    if not scheme(source):
        return source
    parts = urlsplit(source)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _scrub(message: str, source: str) -> str:
    """An error message with the secret parts of ``source`` (user info, query) removed."""
    parts = urlsplit(source) if scheme(source) else None
    if parts is None:
        return message
    message = message.replace(source, redact(source))
    for secret in (parts.password, parts.username, parts.query):
        if secret:
            message = message.replace(secret, "***")
    return message


def _join(base: str, *names: str) -> str:
    """``base/names...``; a URL's query (an access token valid for the folder) stays at the end."""
    base, mark, query = base.partition("?")
    return "/".join([base.rstrip("/"), *names]) + mark + query


def _filesystem(source: str, timeout: float) -> tuple[Any, str]:
    """The fsspec filesystem for ``source`` and the path in it, with ``timeout`` on every request."""
    import fsspec
    from fsspec.core import url_to_fs

    kind = scheme(source)
    if kind == "gs":
        raise ModelStoreError(
            f"{redact(source)}: gs:// is not supported; use GCS's S3-compatible API instead "
            "(AWS_ENDPOINT_URL=https://storage.googleapis.com, HMAC keys, an s3:// URI)"
        )
    if kind == "s3":
        # AWS_ENDPOINT_URL and the credentials are read from the environment by botocore itself.
        options: dict[str, Any] = {
            "skip_instance_cache": True,
            "config_kwargs": {"connect_timeout": timeout, "read_timeout": timeout, "retries": {"max_attempts": 2}},
        }
        return url_to_fs(source, **options)
    if kind in ("http", "https"):
        import aiohttp

        fs = fsspec.filesystem(
            "http", skip_instance_cache=True, client_kwargs={"timeout": aiohttp.ClientTimeout(total=timeout)}
        )
        return fs, source
    if kind in ("", "file"):
        return url_to_fs(source)
    raise ModelStoreError(f"{redact(source)}: unsupported model URI scheme {kind!r} (use a folder, s3:// or https://)")


def _read(fs: Any, path: str, source: str, what: str) -> bytes:
    try:
        return fs.cat_file(path)
    except FileNotFoundError:
        raise ModelStoreError(f"{redact(source)}: no {what} there (is it the URL of a model folder?)") from None
    except Exception as exc:  # botocore, aiohttp and OS errors all mean: not fetched this time
        raise ModelStoreError(f"cannot download {what} of {redact(source)}: {type(exc).__name__}: "
                              f"{_scrub(str(exc), source)}") from None  # fmt: skip


def cache_folder(source: str, cache_dir: Path) -> Path:
    """The cache folder a remote ``source`` is downloaded into (one per URI, credentials left out)."""
    return Path(cache_dir) / hashlib.sha256(redact(source).encode()).hexdigest()[:16]


def fetch(source: str, cache_dir: Path, timeout: float = 30.0) -> Path:
    """A local model folder for ``source``: the folder itself, or a fresh download of the remote one.

    Every call downloads again (a cached copy could hide a changed or tampered file from the verification);
    the download lands in a temporary folder and replaces the cache folder only when complete.
    """
    if not is_remote(source):
        return Path(source.removeprefix("file://"))
    started = time.perf_counter()
    fs, root = _filesystem(source, timeout)
    card_bytes = _read(fs, _join(root, CARD_FILE), source, CARD_FILE)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=".fetch-", dir=cache_dir))
    try:
        (partial / CARD_FILE).write_bytes(card_bytes)
        card = read_card(partial)  # the card names the model file (a plain file name, checked)
        data = _read(fs, _join(root, card.model_file), source, f"model file {card.model_file}")
        (partial / card.model_file).write_bytes(data)
        target = cache_folder(source, cache_dir)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    log.info(
        "model fetched",
        extra={"uri": redact(source), "bytes": len(data), "seconds": round(time.perf_counter() - started, 3)},
    )
    return target


def open_predictor(settings: Settings, source: str | None = None) -> Predictor:
    """Fetch ``source`` (default: MODEL_URI, else MODEL_PATH) and load it through the verified loader."""
    from reviewserve.model.predictor import Predictor

    folder = fetch(source or settings.model_source, settings.model_cache_dir, settings.model_fetch_timeout)
    return Predictor.load(folder, max_chars=settings.max_review_chars, expected_sha256=settings.model_sha256)


def push(model_dir: Path, store: str, timeout: float = 30.0) -> str:
    """Upload the model folder ``model_dir`` to ``STORE/NAME/VERSION/``; return that URI.

    The folder is verified first (a model the server would refuse is not published). An existing version
    is never overwritten. The model file (and ``evaluation/``, if present) go first and ``card.json`` last,
    so a version with a card is complete. Not atomic against a concurrent push of the same version.
    """
    model_dir = Path(model_dir)
    _, card = load_verified(model_dir)
    for label, value in (("name", card.name), ("version", card.version)):
        if not SEGMENT.match(value):
            raise ModelStoreError(f"card {label} {value!r} cannot be a store folder name (letters, digits, . _ -)")
    fs, root = _filesystem(store, timeout)
    if scheme(store) in ("http", "https"):
        raise ModelStoreError("push needs a writable store: a folder or s3://")
    target = _join(root, card.name, card.version)
    uri = fs.unstrip_protocol(target) if is_remote(store) else target
    try:
        if fs.exists(_join(target, CARD_FILE)):
            raise ModelStoreError(
                f"{redact(uri)} already exists: a published version is never overwritten; train with a new --version"
            )
        files = [model_dir / card.model_file]
        evaluation = model_dir / "evaluation"
        if evaluation.is_dir():
            files += sorted(p for p in evaluation.rglob("*") if p.is_file())
        for path in [*files, model_dir / CARD_FILE]:
            destination = _join(target, path.relative_to(model_dir).as_posix())
            if not is_remote(store):  # object stores have no folders to make
                fs.makedirs(destination.rsplit("/", 1)[0], exist_ok=True)
            fs.put_file(str(path), destination)
    except ModelStoreError:
        raise
    except Exception as exc:
        raise ModelStoreError(f"cannot write {redact(uri)}: {type(exc).__name__}: {_scrub(str(exc), store)}") from None
    log.info("model pushed", extra={"uri": redact(uri), "model": card.name, "version": card.version})
    return uri


def list_versions(store: str, timeout: float = 30.0) -> Iterator[dict[str, Any]]:
    """The versions under ``store`` (a store root or one model's folder), from their cards, oldest first."""
    if scheme(store) in ("http", "https"):
        raise ModelStoreError("an HTTP server has no listing: list a folder or s3:// store")
    fs, root = _filesystem(store, timeout)
    try:
        paths = sorted(set(fs.glob(_join(root, "*", CARD_FILE)) + fs.glob(_join(root, "*", "*", CARD_FILE))))
        cards = [(path, Card.model_validate_json(fs.cat_file(path))) for path in paths]
    except Exception as exc:
        raise ModelStoreError(f"cannot list {redact(store)}: {type(exc).__name__}: {_scrub(str(exc), store)}") from None
    cards.sort(key=lambda item: (item[1].name, item[1].created))
    for path, card in cards:
        folder = path.rsplit("/", 1)[0]
        yield {
            "uri": redact(fs.unstrip_protocol(folder)) if is_remote(store) else folder,
            "name": card.name,
            "version": card.version,
            "created": card.created.isoformat(),
            "model_sha256": card.model_sha256,
            "metrics": card.metrics,
        }
