"""``make bench``: the model's own limit in process, then reviewserve and its peers under wrk, in rounds.

    .venv/bin/python -m benchmarks.run [--duration 10] [--rounds 3] [--levels 1,8,32] [--smoke]

Every server runs alone on the same model, with the same bodies; within one round each peer is
compared with the reviewserve run of that same round (ratio), and the spread of those ratios over
rounds is reported. Writes benchmarks/results/peers.json, then docs/benchmarks.md and its plots.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import click

from benchmarks import export, inprocess, machine, report, servers, texts, venvs
from benchmarks.workers import memory_kib
from benchmarks.wrk import run_wrk
from reviewserve.model import Predictor

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
ALL_PEERS = ("seed", "plain", "mlserver", "mlflow")


def _targets(peers: list[str], smoke: bool, work: Path, log: Path, sample: str, batch: list[str]) -> list:
    """reviewserve first, then each peer on the model exported for it (venvs built or reused)."""
    joblib_file = export.export_joblib(servers.MODEL_DIR, work)
    targets = [servers.reviewserve(sample, batch, work)]
    for peer in peers:
        # --smoke: seed and plain run from the project venv (flask + gunicorn are there), no venv to build
        python = servers.PROJECT_PYTHON if smoke else venvs.ensure_venv(peer, servers.PEER_STACKS[peer], log)
        if peer == "seed":
            targets.append(servers.seed(python, joblib_file, sample))
        elif peer == "plain":
            targets.append(servers.plain(python, joblib_file, sample, batch))
        elif peer == "mlserver":
            targets.append(servers.mlserver(python, joblib_file, work, sample, batch))
        elif peer == "mlflow":
            targets.append(servers.mlflow(python, joblib_file, work, sample, batch))
    return targets


FIXED_LEVEL = 8  # the fixed-sentence row is measured at this level only (or the middle level if absent)


def _measure_target(
    target, levels, duration, warmup, wrk_threads, log, round_no, corpus
) -> tuple[list[dict], dict]:  # fmt: skip
    """All cells of one server in one round, then the PSS of all its processes.

    ``single``: one review per request, cycling through the corpus sentences; ``fixed``: the one
    fixed sentence of the earlier runs, at one level; ``list``: the 32-review body.
    """
    cells = []
    fixed_level = FIXED_LEVEL if FIXED_LEVEL in levels else levels[len(levels) // 2]
    with servers.started(target, log) as process:
        kinds = [("single", target.singles(corpus), levels), ("fixed", [target.single], [fixed_level])]
        if target.listed:
            kinds.append(("list", [target.listed], levels))
        for kind, requests, kind_levels in kinds:
            for c in kind_levels:
                if warmup > 0:
                    run_wrk(target.url, requests, c, warmup, threads=wrk_threads)
                result = run_wrk(target.url, requests, c, duration, threads=wrk_threads)
                cells.append({"round": round_no, "server": target.name, "kind": kind, "c": c, **asdict(result)})
                click.echo(
                    f"  round {round_no} {target.name:<12} {kind:<6} c={c:<3} {result.rps:8.1f} req/s  "
                    f"p50 {result.p50_ms:6.2f} p99 {result.p99_ms:7.2f} ms  errors {result.errors}"
                )
        pids = servers.group_pids(process.pid)
        mem = [memory_kib(p) for p in pids]
        memory = {
            "round": round_no,
            "server": target.name,
            "processes": len(pids),
            "pss_mib": sum(m["Pss"] for m in mem) / 1024,
            "rss_sum_mib": sum(m["Rss"] for m in mem) / 1024,
        }
    return cells, memory


@click.command(help=__doc__)
@click.option("--duration", type=float, default=10.0, show_default=True, help="Seconds measured per cell.")
@click.option("--warmup", type=float, default=2.0, show_default=True, help="Unmeasured seconds before each cell.")
@click.option("--rounds", type=int, default=3, show_default=True, help="Rounds; the server order alternates.")
@click.option("--levels", default="1,8,32", show_default=True, help="wrk connection counts.")
@click.option("--batch", type=int, default=32, show_default=True, help="Reviews in the list body.")
@click.option("--peers", default=",".join(ALL_PEERS), show_default=True, help="Peers to run, comma-separated.")
@click.option("--wrk-threads", type=int, default=1, show_default=True, help="wrk threads (it shares the cores).")
@click.option("--inprocess-n", type=int, default=2000, show_default=True, help="Single predictions timed.")
@click.option("--inprocess-seconds", type=float, default=5.0, show_default=True, help="Seconds per batch figure.")
@click.option("--smoke", is_flag=True, help="Seconds-long: reviewserve, seed and plain from the project venv.")
@click.option("--results", type=click.Path(path_type=Path), default=RESULTS / "peers.json", show_default=True)
@click.option("--doc", type=click.Path(path_type=Path), default=ROOT / "docs" / "benchmarks.md", show_default=True)
@click.option("--work", type=click.Path(path_type=Path), default=ROOT / ".bench" / "run", show_default=True)
def main(
    duration: float,
    warmup: float,
    rounds: int,
    levels: str,
    batch: int,
    peers: str,
    wrk_threads: int,
    inprocess_n: int,
    inprocess_seconds: float,
    smoke: bool,
    results: Path,
    doc: Path,
    work: Path,
) -> None:
    """Run the benchmark and write the results, the report and the plots."""
    level_list = [int(c) for c in levels.split(",")]
    peer_list = [p for p in peers.split(",") if p]
    if smoke:
        duration, warmup, rounds, level_list, inprocess_n, inprocess_seconds = 2.0, 0.5, 1, [1, 8], 200, 1.0
        peer_list = [p for p in peer_list if p in ("seed", "plain")]
    unknown = set(peer_list) - set(ALL_PEERS)
    if unknown:
        raise click.BadParameter(f"unknown peers {sorted(unknown)}; known: {', '.join(ALL_PEERS)}")
    work.mkdir(parents=True, exist_ok=True)
    log = work / "servers.log"
    started = time.time()
    info = machine.describe()
    corpus, source = texts.reviews()
    sample = "This Chatbot is amazing"
    batch_texts = corpus[:batch] if len(corpus) >= batch else (corpus * batch)[:batch]

    click.echo(f"machine: {info['cores_usable']} cores, {info['cpu_model']}, load {info['load_average_start']}")
    click.echo("preparing peers (venvs are cached under .bench/venvs)...")
    targets = _targets(peer_list, smoke, work, log, sample, batch_texts)

    click.echo("in-process...")
    predictor = Predictor.load(servers.MODEL_DIR)
    in_process = inprocess.measure(predictor, corpus, n=inprocess_n, seconds=inprocess_seconds)
    del predictor

    cells: list[dict] = []
    memory: list[dict] = []
    for round_no in range(1, rounds + 1):
        order = targets if round_no % 2 else list(reversed(targets))
        for target in order:
            round_cells, round_memory = _measure_target(
                target, level_list, duration, warmup, wrk_threads, log, round_no, corpus
            )
            cells.extend(round_cells)
            memory.append(round_memory)

    info["load_average_end"] = machine.load_average()
    data = {
        "command": "make bench" if not smoke else "python -m benchmarks.run --smoke",
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
        "wall_s": round(time.time() - started, 1),
        "settings": {
            "duration_s": duration,
            "warmup_s": warmup,
            "rounds": rounds,
            "levels": level_list,
            "batch": batch,
            "wrk_threads": wrk_threads,
            "texts": source,
            "single_texts": f"each single-review request the next of the {len(corpus)} sentences, in turn",
            "single_text": sample,
            "smoke": smoke,
        },
        "machine": info,
        "servers": {t.name: {"label": t.label, "versions": t.versions, "lists": t.listed is not None} for t in targets},
        "in_process": in_process,
        "cells": cells,
        "memory": memory,
    }
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(data, indent=1) + "\n")
    report.write(doc, peers=data)
    click.echo(f"wrote {results} and {doc} in {data['wall_s']} s")


if __name__ == "__main__":
    main()
