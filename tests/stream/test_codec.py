"""Message -> review text, and the dead-letter reasons for messages that cannot be scored."""

from __future__ import annotations

import pytest

from reviewserve.stream.codec import Undecodable, decode


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({b"review": b"This Chatbot is amazing"}, "This Chatbot is amazing"),
        ({b"review": "Très bien, merci".encode()}, "Très bien, merci"),
        ({b"json": b'{"review": "great phone"}'}, "great phone"),
        ({b"review": b"plain wins", b"json": b'{"review": "ignored"}', b"other": b"x"}, "plain wins"),
    ],
)
def test_decodes_review(fields: dict[bytes, bytes], text: str) -> None:
    """The `review` field (plain text) or a `json` field holding {"review": ...}."""
    assert decode(fields, max_chars=100) == text


@pytest.mark.parametrize(
    ("fields", "code", "fragment"),
    [
        ({b"json": b"{not json"}, "invalid_json", "not JSON"),
        ({b"json": b'["review"]'}, "validation_error", "no 'review' key"),
        ({b"json": b'{"review": 5}'}, "invalid_text", "must be a string, got int"),
        ({b"json": b'{"review": null}'}, "invalid_text", "got NoneType"),
        ({b"text": b"hello"}, "validation_error", "no 'review' or 'json' field (fields: ['text'])"),
        ({b"review": b""}, "empty_review", "empty"),
        ({b"review": b" \t\n"}, "empty_review", "empty"),
        ({b"review": b"x" * 101}, "review_too_long", "101 characters; the limit is 100"),
        ({b"review": b"\xff\xfebad"}, "invalid_encoding", "not UTF-8"),
        (None, "deleted", "deleted"),
    ],
)
def test_undecodable_has_reason(fields: dict[bytes, bytes] | None, code: str, fragment: str) -> None:
    """Each unscoreable message names its problem as `code: explanation`."""
    with pytest.raises(Undecodable) as info:
        decode(fields, max_chars=100)
    assert info.value.code == code
    assert info.value.reason.startswith(f"{code}: ")
    assert fragment in info.value.reason
