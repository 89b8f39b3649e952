"""Evaluation: score labelled files through the Predictor, write metrics into the card and a report with plots."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from reviewserve.model import artifact
from reviewserve.model.data import read_files
from reviewserve.model.predictor import Predictor

REPORT_DIR = "evaluation"


def _plots(name: str, targets: list[int], scores: list[float], labels: list[str], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay, RocCurveDisplay

    predicted = [int(s >= 0.5) for s in scores]
    written = []
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    ConfusionMatrixDisplay.from_predictions(targets, predicted, display_labels=labels, ax=axes[0], colorbar=False)
    axes[0].set_title(f"{name}: confusion matrix")
    RocCurveDisplay.from_predictions(targets, scores, ax=axes[1], name=name)
    axes[1].set_title(f"{name}: ROC")
    PrecisionRecallDisplay.from_predictions(targets, scores, ax=axes[2], name=name)
    axes[2].set_title(f"{name}: precision-recall")
    fig.tight_layout()
    path = out / f"{name}.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    written.append(path.name)
    return written


def plotting_available() -> bool:
    """Whether matplotlib (the ``eval`` extra) is installed, so the PNG report can be drawn."""
    return importlib.util.find_spec("matplotlib") is not None


def evaluate(
    model_dir: Path,
    data_files: list[Path],
    *,
    plots: bool = True,
    update_card: bool = True,
    text_column: str = "text",
    label_column: str = "label",
) -> dict[str, dict[str, Any]]:
    """Evaluate the model in ``model_dir`` on each file separately; returns metrics per file stem.

    ``text_column``/``label_column`` name the CSV columns, as for training. Raises ``ValueError`` for an
    unreadable file before anything is scored or written.
    """
    tables = {
        Path(path): read_files([Path(path)], text_column=text_column, label_column=label_column) for path in data_files
    }
    predictor = Predictor.load(model_dir, max_chars=1_000_000)
    report_dir = Path(model_dir) / REPORT_DIR
    report_dir.mkdir(exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    evaluated = []
    for path, data in tables.items():
        keep = [i for i, t in enumerate(data.texts) if t.strip()]
        texts = [data.texts[i] for i in keep]
        targets = [data.targets[i] for i in keep]
        scores = [p.positive_probability for p in predictor.predict(texts)]
        predicted = [int(s >= 0.5) for s in scores]
        name = Path(path).stem
        results[name] = {
            "rows": len(texts),
            "accuracy": round(accuracy_score(targets, predicted), 4),
            "precision": round(precision_score(targets, predicted), 4),
            "recall": round(recall_score(targets, predicted), 4),
            "f1": round(f1_score(targets, predicted), 4),
            "roc_auc": round(roc_auc_score(targets, scores), 4),
        }
        if plots:
            results[name]["plots"] = _plots(name, targets, scores, predictor.labels, report_dir)
        evaluated.extend(data.files)
    (report_dir / "report.json").write_text(
        json.dumps({"model": predictor.name, "version": predictor.version, "results": results}, indent=2) + "\n"
    )
    if update_card:
        card = predictor.card.model_copy(
            update={
                "metrics": {name: {k: v for k, v in r.items() if isinstance(v, float)} for name, r in results.items()},
                "evaluation_files": evaluated,
            }
        )
        artifact.write_card(Path(model_dir), card)
    return results
