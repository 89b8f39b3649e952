"""``--shard K/N``: which rows job K of N owns, as a SQL expression so each job reads only its rows.

Integer keys: ``((id % N) + N) % N = K`` (non-negative for negative ids too).

Any other key (text, UUID, ...): the first 4 bytes of the MD5 of the key's text, read as a signed
big-endian 32-bit integer, then the same modulo. PostgreSQL computes it natively
(``('x' || substr(md5(id::text), 1, 8))::bit(32)::int``); SQLite through the deterministic function
``reviewserve_shard_hash`` registered on every connection (:func:`register_sqlite_functions`).
:func:`key_hash` is the same function in Python, so both databases put a key in the same shard.
No locks: every job filters its own disjoint slice, and N jobs together cover every row once.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, Text, cast, func, literal
from sqlalchemy.sql.elements import ColumnElement

SQLITE_HASH_FUNCTION = "reviewserve_shard_hash"
_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class Shard:
    """Job ``index`` of ``count`` (0-based, like a Kubernetes Job completion index)."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        """Parse ``K/N`` with ``0 <= K < N``; raises ``ValueError`` naming the problem."""
        match = _SHARD.match(text or "")
        if not match:
            raise ValueError(f"shard must look like K/N (e.g. 0/4), got {text!r}")
        index, count = int(match.group(1)), int(match.group(2))
        if count < 1 or index >= count:
            raise ValueError(f"shard {text!r}: need N >= 1 and 0 <= K < N")
        return cls(index, count)

    @property
    def active(self) -> bool:
        """True when the rows are split at all (N > 1)."""
        return self.count > 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def key_hash(key: object) -> int:
    """Signed 32-bit integer of the first 4 MD5 bytes of ``str(key)`` (same as the SQL expressions)."""
    digest = hashlib.md5(str(key).encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest[:4], "big", signed=True)


def _sqlite_hash(key: Any) -> int | None:
    if key is None:
        return None
    if isinstance(key, bytes):
        key = key.decode("utf-8", "replace")
    return key_hash(key)


def register_sqlite_functions(dbapi_connection: Any) -> None:
    """Register :func:`key_hash` as a deterministic SQLite function on a new DBAPI connection."""
    dbapi_connection.create_function(SQLITE_HASH_FUNCTION, 1, _sqlite_hash, deterministic=True)


def _modulo(value: ColumnElement[Any], count: int) -> ColumnElement[Any]:
    return ((value % count) + count) % count


def shard_filter(column: ColumnElement[Any], shard: Shard, dialect: str) -> ColumnElement[bool] | None:
    """The WHERE condition selecting ``shard``'s rows of ``column`` (None when not sharded)."""
    if not shard.active:
        return None
    python_type = _python_type(column)
    if python_type is int:
        return _modulo(column, shard.count) == shard.index
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import BIT

        hex8 = literal("x", Text).concat(func.substr(func.md5(cast(column, Text)), 1, 8))
        hashed = cast(cast(hex8, BIT(32)), Integer)
    elif dialect == "sqlite":
        hashed = getattr(func, SQLITE_HASH_FUNCTION)(column)
    else:
        raise ValueError(f"--shard over non-integer keys supports PostgreSQL and SQLite, not {dialect}")
    return _modulo(hashed, shard.count) == shard.index


def _python_type(column: ColumnElement[Any]) -> type | None:
    try:
        return column.type.python_type
    except NotImplementedError:
        return None
