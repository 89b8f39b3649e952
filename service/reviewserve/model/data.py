"""Reading labelled review files: ``text<TAB>label`` (.tsv/.txt, optional header) or CSV with a header."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from reviewserve.model.artifact import DataFile, sha256_file

LABELS = ("negative", "positive")
_LABEL_VALUES = {"0": 0, "1": 1, "negative": 0, "positive": 1, "neg": 0, "pos": 1}


@dataclass
class LabelledData:
    """Texts with 0/1 targets (1 = positive) and where they came from."""

    texts: list[str]
    targets: list[int]
    files: list[DataFile]

    def __len__(self) -> int:
        return len(self.texts)


def _target(raw: str, where: str) -> int:
    try:
        return _LABEL_VALUES[raw.strip().lower()]
    except KeyError:
        raise ValueError(f"{where}: label {raw!r} is not one of {sorted(_LABEL_VALUES)}") from None


def read_file(path: Path, text_column: str = "text", label_column: str = "label") -> tuple[list[str], list[int]]:
    """Read one labelled file.

    Tab-separated files are split on the *last* tab with no quoting (review text may hold ``"``);
    a first line whose label is not a label (e.g. ``sentence<TAB>label``) is a header.
    ``.csv`` files need a header with ``text_column`` and ``label_column``.
    """
    texts: list[str] = []
    targets: list[int] = []
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = {text_column, label_column} - set(reader.fieldnames or [])
            if missing:
                raise ValueError(f"{path}: CSV header lacks column(s) {sorted(missing)}")
            for number, row in enumerate(reader, start=2):
                texts.append(row[text_column])
                targets.append(_target(row[label_column], f"{path}:{number}"))
        return texts, targets
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            if "\t" not in line:
                raise ValueError(f"{path}:{number}: no tab between text and label")
            text, label = line.rsplit("\t", 1)
            if number == 1 and label.strip().lower() not in _LABEL_VALUES:
                continue  # header
            texts.append(text)
            targets.append(_target(label, f"{path}:{number}"))
    return texts, targets


def read_files(paths: list[Path], **columns: str) -> LabelledData:
    """Read and concatenate several labelled files, recording each file's sha256 and row count."""
    data = LabelledData([], [], [])
    for path in paths:
        texts, targets = read_file(Path(path), **columns)
        data.texts.extend(texts)
        data.targets.extend(targets)
        data.files.append(DataFile(path=Path(path).name, sha256=sha256_file(Path(path)), rows=len(texts)))
    return data
