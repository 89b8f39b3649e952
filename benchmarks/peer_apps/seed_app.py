"""Seed-style server: one Flask process, ``app.run(threaded=True)``, jsonify the prediction.

    python seed_app.py MODEL.joblib PORT
"""

import sys

import joblib
from flask import Flask, jsonify, request

model = joblib.load(sys.argv[1])
app = Flask("TextReviewsModel")


@app.route("/predict", methods=["POST"])
def predict():
    """Score one review: {"review": text} -> {"prediction": label, "probability": p}."""
    review = request.get_json()["review"]
    proba = model.predict_proba([review])[0]
    best = int(proba.argmax())
    return jsonify({"prediction": int(model.classes_[best]), "probability": float(proba[best])})


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[2]), threaded=True)
