"""Issue 17: what a newcomer runs in the first hour works as written (retrain, evaluate, model default, help).

Each command runs as a real subprocess of the installed CLI (`python -m reviewserve.cli` of this venv), from a
folder that is not the repository, without MODEL_PATH, as a user would run it.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOOD = ["great", "excellent", "love", "wonderful", "amazing", "perfect", "best"]
BAD = ["terrible", "awful", "hate", "broken", "worst", "useless", "poor"]
THINGS = ["phone", "food", "service", "movie", "battery", "staff", "screen"]
# matplotlib hidden as if the eval extra were not installed (find_spec answers None for a None entry)
NO_MATPLOTLIB = "import sys; sys.modules['matplotlib'] = None; from reviewserve.cli import main; main()"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MODEL_PATH", "PYTHONPATH")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def reviewserve(*args: str, cwd: Path, env: dict[str, str] | None = None, code: str | None = None):
    """Run the CLI as a subprocess in ``cwd``; returns the CompletedProcess."""
    command = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "reviewserve.cli", *args]
    return subprocess.run(command, cwd=cwd, env=env or _env(), capture_output=True, text=True, timeout=300, check=False)


def _csv(path: Path, n: int, seed: int, text: str = "body", label: str = "sentiment") -> Path:
    rng = random.Random(seed)
    lines = [f"id,{text},{label}"]
    for i in range(n):
        positive = rng.random() < 0.5
        word, name = rng.choice(GOOD if positive else BAD), "positive" if positive else "negative"
        lines.append(f'{i},"the {rng.choice(THINGS)} is {word}, really {word}",{name}')
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def own_columns(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A model trained with the README's retrain command on CSVs with their own column names."""
    tmp = tmp_path_factory.mktemp("retrain")
    train, held = _csv(tmp / "my_reviews.csv", 400, 1), _csv(tmp / "my_held_out.csv", 100, 2)
    result = reviewserve(
        "train", "--data", str(train), "--text-column", "body", "--label-column", "sentiment",
        "--out", "models/my-model/1", "--name", "my-model", "--version", "1", "--eval", str(held), cwd=tmp,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return tmp, held, tmp / "models" / "my-model" / "1"


def test_train_eval_reads_the_column_flags(own_columns: tuple[Path, Path, Path]) -> None:
    """Item 1: `train --eval` reads the held-out CSV with --text-column/--label-column (it crashed before)."""
    _, _, model = own_columns
    card = json.loads((model / "card.json").read_text())
    assert card["metrics"]["my_held_out"]["accuracy"] > 0.9
    assert json.loads((model / "evaluation" / "report.json").read_text())["results"]["my_held_out"]["rows"] == 100


def test_evaluate_takes_the_column_flags(own_columns: tuple[Path, Path, Path]) -> None:
    """Item 1: `evaluate` has --text-column/--label-column too; the README's --min-accuracy gate holds."""
    tmp, held, model = own_columns
    result = reviewserve(
        "evaluate", "--model", str(model), "--data", str(held), "--text-column", "body", "--label-column", "sentiment",
        "--min-accuracy", "0.85", cwd=tmp,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["my_held_out"]["accuracy"] > 0.9


def test_a_bad_eval_file_is_one_line_before_training(tmp_path: Path) -> None:
    """Item 1: an --eval file without the columns is a one-line error at once, before any model is written."""
    train, held = _csv(tmp_path / "t.csv", 50, 1), _csv(tmp_path / "h.csv", 20, 2, text="words", label="y")
    result = reviewserve(
        "train", "--data", str(train), "--text-column", "body", "--label-column", "sentiment",
        "--out", str(tmp_path / "m"), "--eval", str(held), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert re.fullmatch(r"Error: .*h\.csv: CSV header lacks column\(s\) \['body', 'sentiment'\]\n", result.stderr)
    assert not (tmp_path / "m").exists()
    evaluated = reviewserve("evaluate", "--data", str(held), cwd=tmp_path)
    assert evaluated.returncode == 1 and "Traceback" not in evaluated.stderr
    assert evaluated.stderr.startswith("Error: ") and "lacks column(s) ['label', 'text']" in evaluated.stderr


def test_evaluate_without_matplotlib_scores_and_says_so(own_columns: tuple[Path, Path, Path]) -> None:
    """Item 2: without the eval extra the metrics are still computed; plots are skipped with one line."""
    tmp, held, model = own_columns
    (model / "evaluation" / "my_held_out.png").unlink(missing_ok=True)
    result = reviewserve(
        "evaluate", "--model", str(model), "--data", str(held), "--text-column", "body", "--label-column", "sentiment",
        cwd=tmp, code=NO_MATPLOTLIB,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == (
        "plots skipped: matplotlib is not installed (pip install 'reviewserve[eval]'; make install has it)\n"
    )
    assert "plots" not in json.loads(result.stdout)["my_held_out"]
    assert not (model / "evaluation" / "my_held_out.png").exists()


def test_make_install_installs_the_eval_extra() -> None:
    """Item 2: `make install` (and so `make run`) installs what the documented evaluate/train --eval need."""
    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", "-B", "install"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert re.search(r"pip install .*-e '\.\[eval\]'", dry.stdout), dry.stdout


def test_the_bundled_model_is_found_from_any_folder(tmp_path: Path) -> None:
    """Item 5: without MODEL_PATH, `predict` and `score` find the committed model from another folder."""
    predicted = reviewserve("predict", "This Chatbot is amazing", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout)["prediction"] == "positive"
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "2026-11-01.csv").write_text("text\nI love it\nBroken on arrival\n")
    scored = reviewserve("score", "--source", "logs/2026-11-*.csv", "--no-progress", cwd=tmp_path)
    assert scored.returncode == 0, scored.stderr
    assert json.loads(scored.stdout.splitlines()[-1])["scored"] == 2


def test_a_missing_model_says_how_to_point_at_one(tmp_path: Path) -> None:
    """Item 5: a model folder that is not there names MODEL_PATH and --model."""
    env = {**_env(), "MODEL_PATH": str(tmp_path / "nowhere")}
    result = reviewserve("predict", "fine", cwd=tmp_path, env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "no model card at" in result.stderr and "MODEL_PATH" in result.stderr and "--model" in result.stderr


def test_make_help_lists_every_documented_target() -> None:
    """Item 11: `make help` lists every target that has a `## ` description, digits included (kind-e2e)."""
    documented = re.findall(r"^([^\s:#.$()]+):[^\n]*## ", (ROOT / "Makefile").read_text(), flags=re.M)
    assert "kind-e2e" in documented
    listed = subprocess.run(
        ["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    names = [line.split()[0] for line in listed.stdout.splitlines() if line.strip()]
    assert names == documented


def test_train_help_names_every_label_spelling(tmp_path: Path) -> None:
    """Item 11: `train --help` says which labels work: 0/1 and negative/positive, as the reader accepts."""
    from reviewserve.model.data import _LABEL_VALUES

    result = reviewserve("train", "--help", cwd=tmp_path)
    text = " ".join(result.stdout.split())
    assert "0/1, negative/positive or neg/pos" in text
    assert {"0", "1", "negative", "positive", "neg", "pos"} == set(_LABEL_VALUES)
