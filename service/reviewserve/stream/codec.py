"""Stream message -> review text, or the reason it cannot be scored.

A message carries the review in its ``review`` field as plain UTF-8 text (what
``reviewserve stream produce`` writes). Producers that push JSON documents as they are may use a
``json`` field instead, holding an object with a ``review`` string, as in the web API's body.
Reasons are ``code: explanation`` with the web API's error codes where one fits.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from reviewserve.model.text import InvalidText, validate_text
from reviewserve.stream import REVIEW_FIELD

JSON_FIELD = "json"


class Undecodable(Exception):
    """A message that cannot be scored; ``reason`` goes to the dead-letter stream."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail

    @property
    def reason(self) -> str:
        """``code: detail``."""
        return f"{self.code}: {self.detail}"

    def __str__(self) -> str:
        return self.reason


def _utf8(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        detail = f"field {name!r} is not UTF-8 ({exc.reason} at byte {exc.start})"
        raise Undecodable("invalid_encoding", detail) from None


def decode(fields: Mapping[bytes, bytes] | None, max_chars: int) -> str:
    """The review text of a message, validated like the web API's; raises :class:`Undecodable`."""
    if fields is None:
        raise Undecodable("deleted", "the entry was deleted from the stream before it was scored")
    review = REVIEW_FIELD.encode()
    if review in fields:
        text: object = _utf8(fields[review], REVIEW_FIELD)
    elif JSON_FIELD.encode() in fields:
        try:
            document = json.loads(_utf8(fields[JSON_FIELD.encode()], JSON_FIELD))
        except json.JSONDecodeError as exc:
            raise Undecodable("invalid_json", f"field {JSON_FIELD!r} is not JSON: {exc}") from None
        if not isinstance(document, dict) or REVIEW_FIELD not in document:
            raise Undecodable("validation_error", f"the {JSON_FIELD!r} document has no {REVIEW_FIELD!r} key")
        text = document[REVIEW_FIELD]
    else:
        names = sorted(k.decode("utf-8", "replace") for k in fields)
        raise Undecodable("validation_error", f"no {REVIEW_FIELD!r} or {JSON_FIELD!r} field (fields: {names})")
    try:
        return validate_text(text, max_chars)
    except InvalidText as exc:
        raise Undecodable(exc.code, str(exc)) from None
