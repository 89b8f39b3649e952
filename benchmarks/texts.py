"""Review texts for the benchmarks: real sentences from ../shared/data/uci-sentiment, else a small built-in list."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UCI = ROOT.parent / "shared" / "data" / "uci-sentiment"

BUILT_IN = [
    "This Chatbot is amazing",
    "The battery died after two days and support never answered.",
    "Food was fine, service was slow, but the dessert made up for it.",
    "I would not recommend this phone to anyone.",
    "Great value for the price, works exactly as described!",
    "Worst purchase I have made this year.",
    "The staff were friendly and the place was spotless.",
    "It's okay, nothing special.",
]


def reviews() -> tuple[list[str], str]:
    """(texts, where they came from): the UCI Amazon + Yelp sentences when present, else the built-in list."""
    texts = []
    for name in ("amazon_cells_labelled.txt", "yelp_labelled.txt"):
        path = UCI / name
        if path.is_file():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                text = line.rsplit("\t", 1)[0].strip()  # split on the last tab (see the data's README)
                if text:
                    texts.append(text)
    if texts:
        return texts, f"{len(texts)} UCI sentiment sentences (../shared/data/uci-sentiment)"
    return list(BUILT_IN), f"{len(BUILT_IN)} built-in sentences (../shared/data absent)"


def single_body(text: str) -> str:
    """The seed contract's body."""
    return json.dumps({"review": text})


def list_body(texts: list[str]) -> str:
    """The list body."""
    return json.dumps({"reviews": texts})


def v2_body(texts: list[str], outputs: list[str] | None = None, str_content_type: bool = False) -> str:
    """An Open Inference Protocol V2 infer body with one BYTES input."""
    tensor: dict = {"name": "review", "shape": [len(texts)], "datatype": "BYTES", "data": texts}
    if str_content_type:  # MLServer decodes BYTES as a numpy array unless told these are strings
        tensor["parameters"] = {"content_type": "str"}
    body: dict = {"inputs": [tensor]}
    if outputs:
        body["outputs"] = [{"name": name} for name in outputs]
    return json.dumps(body)
