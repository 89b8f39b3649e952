"""``reviewserve load-reviews``: put review files into a table, so scoring can be tried on a fresh clone.

Reads ``.tsv``/``.txt`` (``text<TAB>label`` split on the last tab, no quoting, the label optional; a
line without a tab is all text) and ``.csv`` (a header with the text column, optionally ``label``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Column, Integer, MetaData, String, Table, Text, func, inspect, select

from reviewserve.batch.sql import SourceError, make_engine

LABELS = {"0": 0, "1": 1, "negative": 0, "positive": 1}


def read_reviews(path: Path, text_column: str = "text") -> Iterator[tuple[str, int | None]]:
    """Yield (text, label or None) for each review in ``path``."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if text_column not in (reader.fieldnames or []):
                raise SourceError(f"{path}: CSV header has no column {text_column!r}: {reader.fieldnames}")
            for row in reader:
                yield row[text_column], LABELS.get((row.get("label") or "").strip().lower())
        return
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            text, tab, label = line.rpartition("\t")
            if not tab:
                yield line, None
                continue
            value = LABELS.get(label.strip().lower())
            if value is None and number == 1:
                continue  # a header such as sentence<TAB>label
            yield (text, value) if value is not None else (line, None)


def load_reviews(
    files: list[Path],
    target: str,
    table: str = "reviews",
    *,
    id_column: str = "id",
    text_column: str = "text",
    replace: bool = False,
    append: bool = False,
    batch: int = 5000,
) -> int:
    """Insert the reviews of ``files`` into ``table`` (created if missing: id, text, label, source).

    A table that already holds rows is refused unless ``replace`` (drop it first) or ``append`` (add
    these rows, knowingly): loading the same files twice must not double the reviews.
    """
    if replace and append:
        raise SourceError("--replace and --append exclude each other")
    engine = make_engine(target)
    metadata = MetaData()
    try:
        if replace:
            Table(table, MetaData()).drop(engine, checkfirst=True)
        if inspect(engine).has_table(table):
            reviews = Table(table, metadata, autoload_with=engine)
            if text_column not in reviews.columns:
                raise SourceError(f"table {table!r} has no column {text_column!r}")
            with engine.connect() as conn:
                held = conn.execute(select(func.count()).select_from(reviews)).scalar_one()
            if held and not append:
                raise SourceError(
                    f"table {table!r} already holds {held} reviews; loading again would add them twice: "
                    "--replace to load it afresh, --append to add these rows to it"
                )
        else:
            reviews = Table(
                table,
                metadata,
                Column(id_column, Integer, primary_key=True, autoincrement=True),
                Column(text_column, Text),
                Column("label", Integer),
                Column("source", String(500)),
            )
            metadata.create_all(engine)
        columns = set(reviews.columns.keys())
        count = 0
        with engine.begin() as conn:
            rows: list[dict[str, object]] = []
            for path in files:
                for text, label in read_reviews(path, text_column):
                    row: dict[str, object] = {text_column: text}
                    if "label" in columns:
                        row["label"] = label
                    if "source" in columns:
                        row["source"] = path.name
                    rows.append(row)
                    if len(rows) >= batch:
                        conn.execute(reviews.insert(), rows)
                        count += len(rows)
                        rows = []
            if rows:
                conn.execute(reviews.insert(), rows)
                count += len(rows)
        return count
    finally:
        engine.dispose()
