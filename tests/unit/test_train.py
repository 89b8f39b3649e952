"""Training on a small slice, evaluation report, CLI round trip."""

import json
import random
from pathlib import Path

from click.testing import CliRunner

from reviewserve.cli import main
from reviewserve.model import Predictor

GOOD = ["great", "excellent", "love", "wonderful", "amazing", "perfect", "best"]
BAD = ["terrible", "awful", "hate", "broken", "worst", "useless", "poor"]
THINGS = ["phone", "food", "service", "movie", "battery", "staff", "screen"]


def _write_slice(path: Path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    lines = ["text,label"]
    for _ in range(n):
        positive = rng.random() < 0.5
        word = rng.choice(GOOD if positive else BAD)
        lines.append(f'"the {rng.choice(THINGS)} is {word}, really {word}",{int(positive)}')
    path.write_text("\n".join(lines) + "\n")


def test_train_then_evaluate_writes_model_card_and_report(tmp_path: Path) -> None:
    train_file, eval_file, out = tmp_path / "train.csv", tmp_path / "held_out.csv", tmp_path / "model"
    _write_slice(train_file, 400, seed=1)
    _write_slice(eval_file, 100, seed=2)
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "train",
            "--data",
            str(train_file),
            "--out",
            str(out),
            "--name",
            "tiny",
            "--version",
            "7",
            "--eval",
            str(eval_file),
        ],
    )
    assert result.exit_code == 0, result.output
    card = json.loads((out / "card.json").read_text())
    assert card["name"] == "tiny" and card["version"] == "7"
    assert card["training_files"] == [{"path": "train.csv", "sha256": card["training_files"][0]["sha256"], "rows": 400}]
    assert card["metrics"]["held_out"]["accuracy"] > 0.9
    assert (out / "evaluation" / "held_out.png").stat().st_size > 10_000
    assert json.loads((out / "evaluation" / "report.json").read_text())["results"]["held_out"]["rows"] == 100

    predictor = Predictor.load(out)
    assert [p.label for p in predictor.predict(["the food is awful", "the staff is wonderful"])] == [
        "negative",
        "positive",
    ]

    low = runner.invoke(
        main, ["evaluate", "--model", str(out), "--data", str(eval_file), "--no-plots", "--min-accuracy", "1.01"]
    )
    assert low.exit_code == 1 and "accuracy below 1.01" in low.output


def test_predict_command_reads_stdin(model_dir: Path) -> None:
    result = CliRunner().invoke(main, ["predict", "--model", str(model_dir)], input="I love it\nI hate it\n")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["prediction"] for r in rows] == ["positive", "negative"]


def test_predict_command_refuses_empty_text(model_dir: Path) -> None:
    result = CliRunner().invoke(main, ["predict", "--model", str(model_dir), "  "])
    assert result.exit_code == 1 and "empty" in result.output
