"""Held-out accuracy of the committed model on UCI amazon and yelp (never used in training)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import shared_file

pytestmark = pytest.mark.slow
TARGET = 0.85


def test_held_out_accuracy_meets_target_and_matches_the_card(model_dir: Path, tmp_path: Path) -> None:
    amazon = shared_file("uci-sentiment", "amazon_cells_labelled.txt")
    yelp = shared_file("uci-sentiment", "yelp_labelled.txt")
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)  # evaluate rewrites the card's metrics: keep the committed one intact
    card = json.loads((model_dir / "card.json").read_text())
    assert {f["path"] for f in card["training_files"]}.isdisjoint({amazon.name, yelp.name})

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "reviewserve.cli",
            "evaluate",
            "--model",
            str(copy),
            "--data",
            str(amazon),
            "--data",
            str(yelp),
            "--min-accuracy",
            str(TARGET),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    measured = json.loads((copy / "evaluation" / "report.json").read_text())["results"]
    for name in ("amazon_cells_labelled", "yelp_labelled"):
        assert measured[name]["rows"] == 1000
        assert measured[name]["accuracy"] >= TARGET
        assert measured[name]["accuracy"] == card["metrics"][name]["accuracy"], "the committed card is stale"
        assert (copy / "evaluation" / f"{name}.png").stat().st_size > 10_000
