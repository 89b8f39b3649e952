"""Text handling shared by training and serving: input validation and the model's tokenizer.

The tokenizer is part of the trained pipeline, so it must stay importable under this exact name
(``reviewserve.model.text.tokenize``) for saved models to load.
"""

from __future__ import annotations

import re

# SST-2 (the training set) is lower-cased and PTB-tokenised ("does n't"); raw reviews say "doesn't".
_CONTRACTION = re.compile(r"(\w)n't\b")
_TOKEN = re.compile(r"n't|[a-z0-9]+(?:'[a-z]+)?|[!?.,;:]+")
_PUNCT = re.compile(r"^[.,!?;:]+$")
_NEGATORS = frozenset(
    [
        "not",
        "no",
        "never",
        "n't",
        "nothing",
        "nobody",
        "none",
        "neither",
        "nor",
        "hardly",
        "barely",
        "without",
        "cannot",
    ]
)


# A review must hold one character that str.isspace() does not call whitespace. Spelled out as a
# JSON-Schema/ECMA-262 class (not \\S, whose meaning differs between regex engines) for the API document.
NOT_BLANK_PATTERN = r"[^\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


class InvalidText(ValueError):
    """A review that cannot be scored; ``code`` names the problem for API errors."""

    code = "invalid_text"


class EmptyText(InvalidText):
    """Empty or whitespace-only review."""

    code = "empty_review"


class TextTooLong(InvalidText):
    """Review longer than the configured limit."""

    code = "review_too_long"


def validate_text(text: object, max_chars: int, where: str = "review") -> str:
    """Return ``text`` if it is a scoreable review, else raise an :class:`InvalidText` subclass."""
    if not isinstance(text, str):
        raise InvalidText(f"{where} must be a string, got {type(text).__name__}")
    if not text.strip():
        raise EmptyText(f"{where} is empty or only whitespace")
    if len(text) > max_chars:
        raise TextTooLong(f"{where} has {len(text)} characters; the limit is {max_chars}")
    return text


def normalize(text: str) -> str:
    """Lower-case and split contractions the way the SST-2 training text is written."""
    text = _CONTRACTION.sub(r"\1 n't", text.lower())
    return text.replace("can not", "cannot")


def tokenize(text: str) -> list[str]:
    """Word tokens with negation scope: words after a negator, up to punctuation, get a ``NOT_`` prefix."""
    tokens: list[str] = []
    negated = False
    for token in _TOKEN.findall(normalize(text)):
        if _PUNCT.match(token):
            negated = False
            tokens.append(token)
            continue
        tokens.append("NOT_" + token if negated else token)
        if token in _NEGATORS:
            negated = True
    return tokens
