"""Model versions for the store tests: the committed model under another version, or with a tampered file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.conftest import MODEL_DIR


def make_version(target: Path, version: str, source: Path = MODEL_DIR) -> Path:
    """Copy the committed model folder to ``target`` as version ``version`` (the card pins the same file)."""
    shutil.copytree(source, target)
    card_path = target / "card.json"
    card = json.loads(card_path.read_text())
    card["version"] = version
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return target


def tamper(model_dir: Path) -> None:
    """Change one byte of the model file in place, leaving its card as it was."""
    path = model_dir / json.loads((model_dir / "card.json").read_text())["model_file"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
