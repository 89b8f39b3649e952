"""The plain stack: Flask under gunicorn (sync workers, ``--preload``), plain ``predict_proba``.

    PEER_MODEL=model.joblib gunicorn -w 2 --preload plain_app:app
"""

import os

import joblib
from flask import Flask, jsonify, request

model = joblib.load(os.environ["PEER_MODEL"])
app = Flask(__name__)


@app.route("/predict", methods=["POST"])
def predict():
    """{"review": text} or {"reviews": [texts]} -> probabilities from one predict_proba call."""
    body = request.get_json()
    texts = body["reviews"] if "reviews" in body else [body["review"]]
    proba = model.predict_proba(texts)
    out = [{"prediction": int(model.classes_[row.argmax()]), "probability": float(row.max())} for row in proba]
    return jsonify(out[0] if "review" in body else {"predictions": out})


@app.route("/healthz")
def healthz():
    """What a plain app offers its probes: a route served by the same workers as /predict."""
    return jsonify({"status": "ok"})
