"""Issue 17: every shell block of the README's quickstarts runs as written and prints what the README shows.

A fresh copy of the repository gets its own `make install` (a new .venv, as a newcomer's clone would), then
the blocks of the web, batch, streaming and retrain sections run in order; see readme_runner.py for the
two ports the test moves (with the README's own knobs) and how long-running commands are handled.
The Kubernetes blocks need a cluster (`make kind-e2e` covers them); the Docker block is run by
tests/docker/test_docker_readme.py against the image the Docker tests build.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from tests.conftest import SHARED_DATA, free_port
from tests.newcomer.readme_runner import LONG_RUNNING, Command, Sandbox, compare, sections

ROOT = Path(__file__).resolve().parents[2]
# The README's ../shared/data beside the checkout; a git worktree under <main>/../wt/ finds it one level up.
DATA = next(
    (p for p in (Path(os.environ.get("REVIEWSERVE_SHARED_DATA", SHARED_DATA)), ROOT.parents[1] / "shared" / "data")
     if (p / "uci-sentiment").is_dir()),
    SHARED_DATA,
)  # fmt: skip
README = (ROOT / "README.md").read_text()
SECTIONS = sections(README)
STATUS = re.compile(r"^\[(\d{3})\]$")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """The fresh copy, installed with the README's own first command's install step (`make install`)."""
    if not (DATA / "uci-sentiment").is_dir():
        pytest.skip(f"shared data not present: {DATA}")
    box = Sandbox(ROOT, DATA, tmp_path_factory.mktemp("readme"), free_port(), free_port())
    try:
        box.run("make install", timeout=900)  # what `make run` does first; on its own so its time is not the wait
        yield box
    finally:
        box.close()


def _output_json(output: str) -> dict:
    """The last line of the output that is a JSON object."""
    for line in reversed(output.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise AssertionError(f"no JSON line in:\n{output}")


def _ready_check(box: Sandbox, command: str):
    """How to know a long-running README command is up: the web port, or the consumer group caught up."""
    if "stream consume" in command:
        group = shlex.split(command)[shlex.split(command).index("--group") + 1]
        return lambda: box.group_done(group)
    return box.web_ready


def execute(
    box: Sandbox, heading: str, skip: tuple[str, ...] = (), found: dict[str, list[list[Command]]] = SECTIONS
) -> dict[str, str]:
    """Run every command of a README (or ``found``) section; check statuses and shown JSON; command -> output."""
    assert heading in found, f"no bash block under '## {heading}'"
    outputs: dict[str, str] = {}
    for block in found[heading]:
        for command in block:
            if command.text.startswith(skip):
                continue
            if LONG_RUNNING.search(command.text):
                box.start(command.text, _ready_check(box, command.text))
                continue
            output = box.run(command.text)
            outputs[command.text] = output
            check_output(command, output)
    return outputs


def check_output(command: Command, output: str) -> None:
    """curl answers 2xx; a JSON the README shows after the command equals the printed one."""
    statuses = [int(m.group(1)) for line in output.splitlines() if (m := STATUS.match(line))]
    assert all(200 <= s < 300 for s in statuses), f"{command.text}: HTTP {statuses}\n{output}"
    shown = command.shown_json()
    if shown is not None:
        compare(shown, _output_json(output))


def stop_all(box: Sandbox) -> list[tuple[str, int]]:
    """Stop the section's long-running commands (SIGTERM, as the README says); their exit codes."""
    codes = [(command, box.stop(proc)) for command, proc in box.background]
    box.background.clear()
    return codes


# `reviewserve` in command position: line start, after ; && || | or `do`, or after VAR=value assignments.
BARE_CLI = re.compile(r"(^|[;&|]\s*|\bdo\s+)(\w+=\S+\s+)*reviewserve\s")


def test_readme_invokes_the_cli_one_way() -> None:
    """Item 5: README and docs call the installed command one way, `.venv/bin/reviewserve`, never bare."""
    bare = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for heading, blocks in sections(path.read_text()).items():
            for block in blocks:
                code = [c.text.split(" #")[0] for c in block]  # a trailing comment may name the command
                bare += [f"{path.name} ({heading}): {c}" for c in code if BARE_CLI.search(c)]
    assert not bare, "\n".join(bare)


def test_quickstart_and_web_service_blocks(sandbox: Sandbox) -> None:
    """`make run`, the seed curl (its JSON exactly as shown), and the web section's calls (all 2xx)."""
    try:
        execute(sandbox, "Quickstart: the two commands", skip=("make test",))  # make test: this very suite
        outputs = execute(sandbox, "Web service")
        metrics = {c: o for c, o in outputs.items() if "/metrics" in c}
        assert any("reviewserve_predictions_total" in o for o in metrics.values()), metrics
    finally:
        stop_all(sandbox)


def test_batch_blocks(sandbox: Sandbox) -> None:
    """`make load-reviews`, `make score` (its summary as shown), the sqlite3 query; a rerun skips every row."""
    outputs = execute(sandbox, "Batch scoring")
    query = next(o for c, o in outputs.items() if c.startswith("sqlite3 "))
    assert len(query.strip().splitlines()) == 3
    again = _output_json(sandbox.run("make score"))
    assert again["read"] == 0 and again["skipped"] == again["total"] > 0, again  # "Run it again and it reads nothing"


def test_streaming_blocks(sandbox: Sandbox) -> None:
    """Redis as shown, produce, consume until the group is caught up, the results and groups as shown."""
    try:
        outputs = execute(sandbox, "Streaming (Redis Streams)")
        xrange = next(o for c, o in outputs.items() if c.startswith("redis-cli ") and "XRANGE" in c)
        for field_name in ("source_id", "label", "probability", "positive_probability", "model_version"):
            assert field_name in xrange.split(), xrange
    finally:
        codes = stop_all(sandbox)
    assert all(code == 0 for _, code in codes), codes  # "Ctrl-C or SIGTERM stops cleanly"


def test_streaming_fan_out_in_docs(sandbox: Sandbox) -> None:
    """Item 3: docs/streaming.md's quickstart as written: the archiver starts while consumer c1 runs (no
    port of its own on a workstation), and the review piped to the producer reaches both groups."""
    quickstart = sections((ROOT / "docs" / "streaming.md").read_text())["Streaming (Redis Streams)"][:2]
    assert "redis-server" in quickstart[0][0].text and "--group archiver" in quickstart[1][2].text, quickstart
    try:
        outputs = execute(sandbox, "quickstart", found={"quickstart": quickstart})  # the reference follows it
        assert any("--group archiver" in c for c, _ in sandbox.background), "the docs start no archiver"
        piped = next(o for c, o in outputs.items() if c.startswith("echo ") and "stream produce" in c)
        assert _output_json(piped)["produced"] == 1, piped
        deadline = time.monotonic() + 120
        while not (sandbox.group_done("scorers") and sandbox.group_done("archiver")):
            assert time.monotonic() < deadline, "scorers and archiver did not catch up in 120 s"
            time.sleep(0.5)
        last = redis.Redis(port=sandbox.redis_port).xrevrange("reviews", count=1)[0][0].decode()
        results = redis.Redis(port=sandbox.redis_port).xrange("predictions")
        assert [f for _, f in results if f[b"source_id"].decode() == last], f"no result for {last}"
        with sqlite3.connect(sandbox.root / "archive.db") as db:
            archived = db.execute(
                "SELECT consumer_group, label FROM stream_predictions WHERE source_id = ?", (last,)
            ).fetchall()
        assert archived == [("archiver", "positive")], archived  # "This Chatbot is amazing", archived once
    finally:
        codes = stop_all(sandbox)
    assert all(code == 0 for _, code in codes), codes


def _csv(path: Path, sources: list[Path]) -> None:
    """A user's own CSV, `body` and `sentiment` columns, from labelled text<TAB>label files."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["body", "sentiment"])
        for source in sources:
            for number, line in enumerate(source.read_text().splitlines()):
                text, label = line.rsplit("\t", 1)
                if number == 0 and label.strip() not in ("0", "1"):
                    continue  # header
                writer.writerow([text.strip(), "positive" if label.strip() == "1" else "negative"])


def test_retrain_blocks(sandbox: Sandbox) -> None:
    """Train with own column names and --eval, evaluate with the README's gate, serve the new model."""
    uci = DATA / "uci-sentiment"
    sst2 = DATA / "sst2" / "train.tsv"
    if not sst2.is_file():
        pytest.skip(f"shared data not present: {sst2}")
    _csv(sandbox.root / "my_reviews.csv", [sst2])
    _csv(sandbox.root / "my_held_out.csv", [uci / "amazon_cells_labelled.txt", uci / "yelp_labelled.txt"])
    try:
        execute(sandbox, "Retrain on your own data")
        served = requests.get(f"http://127.0.0.1:{sandbox.web_port}/v2/models/my-model", timeout=5)
        assert served.status_code == 200 and served.json()["name"] == "my-model"
    finally:
        stop_all(sandbox)
    model = sandbox.root / "models" / "my-model" / "1"
    card = json.loads((model / "card.json").read_text())
    assert card["metrics"]["my_held_out"]["accuracy"] > 0.8
    assert (model / "evaluation" / "my_held_out.png").is_file(), "item 2: make install installs the plots' extra"
