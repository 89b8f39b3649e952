"""Cached virtual environments for the peer servers, from PyPI, under ``.bench/venvs/<peer>``.

Each peer gets its own environment with its own stack at the version PyPI serves, plus what the
trained pipeline needs to unpickle: reviewserve itself (editable, no dependencies: it holds the
tokenizer the pipeline references) and the libraries ``reviewserve.model`` imports, with the
project's scikit-learn pinned as in constraints.txt (the model refuses any other version).
An environment is rebuilt only when its requirement list changes.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENVS = ROOT / ".bench" / "venvs"

# What `reviewserve.model` needs to import (artifact.py imports skops and pydantic).
MODEL_LIBS = ["scikit-learn", "skops", "pydantic", "joblib"]


def pinned(name: str) -> str:
    """``name==version`` from constraints.txt (the project's pins), or the bare name if unpinned."""
    wanted = re.sub(r"[-_.]+", "-", name).lower()
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line:
            pkg, version = line.split("==", 1)
            if re.sub(r"[-_.]+", "-", pkg).lower() == wanted:
                return f"{pkg}=={version.strip()}"
    return name


def requirements(stack: list[str]) -> list[str]:
    """The peer's own stack (unpinned: what PyPI serves) plus the model's libraries (scikit-learn pinned)."""
    return [*stack, pinned("scikit-learn"), *[lib for lib in MODEL_LIBS if lib != "scikit-learn"]]


def ensure_venv(peer: str, stack: list[str], log: Path) -> Path:
    """Create (or reuse) the venv for ``peer`` with ``stack``; return its python."""
    folder = VENVS / peer
    python = folder / "bin" / "python"
    reqs = requirements(stack)
    spec = json.dumps({"python": sys.version.split()[0], "requirements": reqs}, sort_keys=True)
    stamp = folder / ".spec"
    if python.exists() and stamp.exists() and stamp.read_text() == spec:
        return python
    if folder.exists():
        shutil.rmtree(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out:
        out.write(f"--- {peer}: {reqs}\n")
        out.flush()
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, stdout=out, stderr=out)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True, stdout=out, stderr=out)
        subprocess.run([*pip, *reqs], check=True, stdout=out, stderr=out)
        subprocess.run([*pip, "--no-deps", "-e", str(ROOT)], check=True, stdout=out, stderr=out)
    stamp.write_text(spec)
    return python


def versions(python: Path, packages: list[str]) -> dict[str, str]:
    """Installed versions of ``packages`` in the environment of ``python``."""
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for p in sys.argv[1:]:\n"
        "    try: out[p] = m.version(p)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )
    result = subprocess.run([str(python), "-c", code, *packages], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]
