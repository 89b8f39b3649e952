"""benchmarks.wrk.lua_string: any review text survives as a Lua literal (LuaJIT's escape rules, as wrk reads them)."""

from __future__ import annotations

import re

import pytest

from benchmarks.wrk import lua_string


def _lua_decode(literal: str) -> bytes:
    """Decode a double-quoted Lua literal as LuaJIT does: ``\\ddd`` takes up to three digits, above 255 is an error."""
    assert literal[0] == literal[-1] == '"'
    out = bytearray()
    body, i = literal[1:-1], 0
    while i < len(body):
        if body[i] != "\\":
            out += body[i].encode()
            i += 1
            continue
        digits = re.match(r"\d{1,3}", body[i + 1 :])
        assert digits, f"unsupported escape at {i}: {body[i:i + 4]!r}"
        value = int(digits.group())
        if value > 255:
            raise ValueError(f"invalid escape sequence \\{digits.group()}")
        out.append(value)
        i += 1 + len(digits.group())
    return bytes(out)


@pytest.mark.parametrize(
    "text",
    [
        "This Chatbot is amazing",
        'She said "no" \\ twice',
        "My fiancé and I came",  # UTF-8 bytes escaped
        "tab\t7 stars",  # a low byte followed by digits: \0097, not \97 ("a")
        "café 2nd visit",
        "crêpe\n250 g",  # \010 then digits: \10250 would be read as \102 "50"
    ],
)
def test_lua_string_round_trips(text: str) -> None:
    assert _lua_decode(lua_string(text)) == text.encode()
