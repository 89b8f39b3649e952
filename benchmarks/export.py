"""Export the committed model, loaded once through the verified loader, in each peer's format."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import joblib

from reviewserve.model import Predictor

MLSERVER_MODEL = "review-sentiment"

# Run inside the mlflow venv: joblib file -> mlflow.sklearn model folder (predict_proba, like the others).
# mlflow saves with skops by default and needs our pipeline's own types named trusted: the loader's allow-list.
_MLFLOW_SAVE = """
import sys, joblib, mlflow.sklearn
from reviewserve.model.artifact import TRUSTED_TYPES
mlflow.sklearn.save_model(joblib.load(sys.argv[1]), sys.argv[2], pyfunc_predict_fn="predict_proba",
                          pip_requirements=["scikit-learn"], skops_trusted_types=list(TRUSTED_TYPES))
"""


def export_joblib(model_dir: Path, out: Path) -> Path:
    """Load ``model_dir`` with ``Predictor.load`` (sha256 + version check, skops allow-list); joblib.dump it."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / "model.joblib"
    joblib.dump(Predictor.load(model_dir).estimator, target)
    return target


def export_mlserver(joblib_file: Path, out: Path) -> Path:
    """An MLServer model folder: model-settings.json naming the scikit-learn runtime, and the joblib file."""
    folder = out / "mlserver" / MLSERVER_MODEL
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.joblib").write_bytes(joblib_file.read_bytes())
    settings = {
        "name": MLSERVER_MODEL,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "1"},
    }
    (folder / "model-settings.json").write_text(json.dumps(settings, indent=2))
    return folder.parent


def export_mlflow(python: Path, joblib_file: Path, out: Path) -> Path:
    """An MLflow model folder made with ``mlflow.sklearn.save_model`` in the mlflow venv."""
    folder = out / "mlflow-model"
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    subprocess.run([str(python), "-c", _MLFLOW_SAVE, str(joblib_file), str(folder)], check=True)
    return folder
