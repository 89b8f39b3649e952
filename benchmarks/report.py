"""docs/benchmarks.md and its plots, from the results JSON of `make bench`, `make bench-slow`, `make bench-soak`."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from benchmarks import overload_report

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
NAMES = {
    "peers": "peers.json",
    "slow": "slow_clients.json",
    "soak": "soak.json",
    "soak_no_recycling": "soak-no-recycling.json",
    "overload": "overload.json",
}

# issue 6 targets on single-review /predict: reviewserve / peer requests/s at a level must reach the factor
RATIO_TARGETS = [("plain", 8, 2.0), ("mlserver", 8, 3.0), ("seed", 8, 4.0), ("plain", 1, 1.0), ("plain", 32, 1.0)]
P99_TARGET_MS = 10.0
LIST_TARGET = 0.8


def load(kind: str) -> dict | None:
    """The committed results of one command, if it has been run."""
    path = RESULTS / NAMES[kind]
    return json.loads(path.read_text()) if path.is_file() else None


def _spread(values: list[float], fmt: str = "{:.2f}") -> str:
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


def _cells(data: dict, server: str, kind: str, c: int) -> list[dict]:
    return [x for x in data["cells"] if x["server"] == server and x["kind"] == kind and x["c"] == c]


def ratios(data: dict, peer: str, kind: str, c: int) -> list[float]:
    """reviewserve req/s over the peer's, one ratio per round in which both ran."""
    ours = {x["round"]: x["rps"] for x in _cells(data, "reviewserve", kind, c)}
    theirs = {x["round"]: x["rps"] for x in _cells(data, peer, kind, c)}
    return [ours[r] / theirs[r] for r in sorted(ours) if r in theirs and theirs[r] > 0]


def _list_ratio(data: dict, c: int = 8) -> list[float]:
    batch = data["settings"]["batch"]
    denominator = data["in_process"][f"batch10k_rows_per_s_{data['in_process']['processes']}proc"]
    return [x["rps"] * batch / denominator for x in _cells(data, "reviewserve", "list", c)]


def _verdict(values: list[float], ok) -> str:
    if not values:
        return "not measured"
    return "met" if ok(statistics.median(values)) else "**not met**"


def _targets_section(data: dict) -> list[str]:
    lines = ["| target | measured: median [min-max over rounds] | |", "|---|---|---|"]
    for peer, c, factor in RATIO_TARGETS:
        values = ratios(data, peer, "single", c)
        lines.append(
            f"| single `/predict` c={c}: reviewserve >= {factor:g}x {peer} | {_spread(values)}x | "
            f"{_verdict(values, lambda v, f=factor: v >= f)} |".replace("| -x |", "| - |")
        )
    p99 = [x["p99_ms"] for x in _cells(data, "reviewserve", "single", 8)]
    lines.append(
        f"| single c=8: reviewserve p99 <= {P99_TARGET_MS:g} ms | {_spread(p99, '{:.1f}')} ms | "
        f"{_verdict(p99, lambda v: v <= P99_TARGET_MS)} |"
    )
    values = _list_ratio(data)
    lines.append(
        f"| 32-review lists c=8: reviews/s >= {LIST_TARGET:.0%} of in-process batch on the same cores | "
        f"{_spread([v * 100 for v in values], '{:.0f}')} % | {_verdict(values, lambda v: v >= LIST_TARGET)} |"
    )
    return lines


def _table(data: dict, kind: str) -> list[str]:
    levels = data["settings"]["levels"]
    head = (
        "| server | "
        + " | ".join(f"req/s c={c}" for c in levels)
        + " | "
        + " | ".join(f"p50 / p90 / p99 ms c={c}" for c in levels)
        + " | errors |"
    )
    lines = [head, "|" + "---|" * (2 + 2 * len(levels))]
    for server in data["servers"]:
        if kind == "list" and not data["servers"][server]["lists"]:
            continue
        rps = [_spread([x["rps"] for x in _cells(data, server, kind, c)], "{:.0f}") for c in levels]
        lat = []
        for c in levels:
            cells = _cells(data, server, kind, c)
            if not cells:
                lat.append("-")
                continue
            p = [statistics.median(x[k] for x in cells) for k in ("p50_ms", "p90_ms", "p99_ms")]
            lat.append(" / ".join(f"{v:.1f}" for v in p))
        errors = sum(x["errors_status"] + x["errors_socket"] for c in levels for x in _cells(data, server, kind, c))
        lines.append(f"| {server} | " + " | ".join(rps) + " | " + " | ".join(lat) + f" | {errors} |")
    return lines


def _ratio_table(data: dict) -> list[str]:
    levels = data["settings"]["levels"]
    cols = [("single", c) for c in levels] + [("list", c) for c in levels]
    lines = ["| peer | " + " | ".join(f"{k} c={c}" for k, c in cols) + " |", "|---|" + "---|" * len(cols)]
    for peer in data["servers"]:
        if peer == "reviewserve":
            continue
        lines.append(f"| {peer} | " + " | ".join(_spread(ratios(data, peer, k, c)) for k, c in cols) + " |")
    return lines


def plot(data: dict, folder: Path) -> list[str]:
    """Throughput against concurrency and latency percentiles (PNG); returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    levels = data["settings"]["levels"]
    servers = list(data["servers"])
    colors = {server: f"C{i}" for i, server in enumerate(servers)}  # one colour per server in every panel
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, kind, unit in ((axes[0], "single", "requests/s"), (axes[1], "list", "reviews/s")):
        scale = 1 if kind == "single" else data["settings"]["batch"]
        for server in servers:
            pts = [(c, [x["rps"] * scale for x in _cells(data, server, kind, c)]) for c in levels]
            pts = [(c, v) for c, v in pts if v]
            if not pts:
                continue
            med = [statistics.median(v) for _, v in pts]
            err = [[m - min(v) for m, (_, v) in zip(med, pts, strict=True)],
                   [max(v) - m for m, (_, v) in zip(med, pts, strict=True)]]  # fmt: skip
            ax.errorbar([c for c, _ in pts], med, yerr=err, marker="o", capsize=3, label=server, color=colors[server])
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels, [str(c) for c in levels])
        ax.set_xlabel("concurrent connections (wrk -c)")
        ax.set_ylabel(unit)
        ax.set_title(f"{'one review' if kind == 'single' else str(data['settings']['batch']) + ' reviews'} per request")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Throughput: median over rounds, bars = min-max")
    fig.tight_layout()
    fig.savefig(folder / "throughput.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(levels), figsize=(4 * len(levels), 4), sharey=True)
    axes = axes if len(levels) > 1 else [axes]
    width = 0.8 / max(1, len(servers))
    for ax, c in zip(axes, levels, strict=True):
        for i, server in enumerate(servers):
            cells = _cells(data, server, "single", c)
            if not cells:
                continue
            vals = [statistics.median(x[k] for x in cells) for k in ("p50_ms", "p90_ms", "p99_ms")]
            ax.bar([j + i * width for j in range(3)], vals, width, label=server, color=colors[server])
        ax.set_xticks([j + width * (len(servers) - 1) / 2 for j in range(3)], ["p50", "p90", "p99"])
        ax.set_yscale("log")
        ax.set_title(f"single review, c={c}")
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel("latency, ms (log)")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "latency.png", dpi=110)
    plt.close(fig)
    return ["throughput.png", "latency.png"]


def _texts_line(s: dict) -> str:
    if "single_texts" not in s:  # results of a run before the single cells cycled through the corpus
        return (
            f'- Texts: {s["texts"]}; single body `{{"review": "{s["single_text"]}"}}` (every request), '
            f'list body `{{"reviews": [{s["batch"]} of those sentences]}}` (peers: their own format).'
        )
    return (
        f"- Texts: {s['texts']}. Single-review cells: {s['single_texts']} (wrk's `request()` hook); the "
        f'`fixed` row sends `{{"review": "{s["single_text"]}"}}` every time (23 characters, ~5x cheaper '
        f'to score than a real sentence). List body `{{"reviews": [{s["batch"]} of those sentences]}}`. '
        "Peers get their own format with the same texts."
    )


def _fixed_table(data: dict) -> list[str]:
    cells = [x for x in data["cells"] if x["kind"] == "fixed"]
    if not cells:
        return []
    c = cells[0]["c"]
    lines = [
        f"### The fixed sentence, c={c} (the single cells of runs before issue 15)",
        "",
        f"| server | req/s | p50 / p99 ms | real sentences at c={c}: req/s |",
        "|---|---|---|---|",
    ]
    for server in data["servers"]:
        rows = _cells(data, server, "fixed", c)
        if rows:
            real = _spread([x["rps"] for x in _cells(data, server, "single", c)], "{:.0f}")
            p50 = statistics.median(x["p50_ms"] for x in rows)
            p99 = statistics.median(x["p99_ms"] for x in rows)
            lines.append(
                f"| {server} | {_spread([x['rps'] for x in rows], '{:.0f}')} | {p50:.1f} / {p99:.1f} | {real} |"
            )
    return [*lines, ""]


P99_NOTE = (
    "The c=8 p99 target (10 ms) is for real sentences. Issue 15 measured it on the corpus: 8.0-8.5 ms on a "
    "quiet machine, 11-27 ms in runs beside other work on the same 2 cores; a figure here is only as quiet "
    "as the load average printed above."
)


def _peers_section(data: dict, doc: Path) -> list[str]:
    m = data["machine"]
    s = data["settings"]
    ip = data["in_process"]
    procs = ip["processes"]
    out = [
        f"Run `{data['command']}` started {data['started']}, {data['wall_s']:.0f} s in all. "
        f"{s['rounds']} round(s) (server order alternating), each cell {s['warmup_s']:g} s warm-up + "
        f"{s['duration_s']:g} s measured with `wrk -t{s['wrk_threads']} -c<level>` and a Lua script "
        f"(POST bodies; percentiles from wrk's latency histogram via `done()`); one server running at a time.",
        "",
        f"- Machine: {m['cores_usable']} usable cores ({m['cores_online']} online), {m['cpu_model']}, "
        f"{m['memory_gib']} GiB, Linux {m['kernel']}, Python {m['python']}, {m['wrk']}.",
        f"- Load average (1/5/15 min) at start {tuple(round(x, 1) for x in m['load_average_start'])}, at end "
        f"{tuple(round(x, 1) for x in m['load_average_end'])}: anything above ~0 means other work shared the "
        "cores, so absolute figures are low; the ratios within a round are what to read.",
        _texts_line(s),
        "",
        "| server | versions |",
        "|---|---|",
    ]
    for name, srv in data["servers"].items():
        versions = ", ".join(f"{k} {v}" for k, v in srv["versions"].items())
        out.append(f"| {name}: {srv['label']} | {versions} |")
    out += ["", "### Targets (issue 6)", "", *_targets_section(data), "", P99_NOTE, ""]
    out += [
        "### The model in process",
        "",
        "| figure | value |",
        "|---|---|",
        f"| `Predictor.predict([text])` p50 / p99 | {ip['predictor_single']['p50_ms']:.3f} / "
        f"{ip['predictor_single']['p99_ms']:.3f} ms |",
        f"| `estimator.predict_proba([text])` p50 / p99 | {ip['predict_proba_single']['p50_ms']:.3f} / "
        f"{ip['predict_proba_single']['p99_ms']:.3f} ms |",
        f"| 10,000-review batch, 1 process | {ip['batch10k_rows_per_s_1proc']:,.0f} reviews/s |",
        f"| 10,000-review batches, {procs} processes at once (the same cores; the list target's denominator) | "
        f"{ip[f'batch10k_rows_per_s_{procs}proc']:,.0f} reviews/s |",
        f"| 32-review batches, 1 process / {procs} processes | {ip['batch32_rows_per_s_1proc']:,.0f} / "
        f"{ip[f'batch32_rows_per_s_{procs}proc']:,.0f} reviews/s |",
        f"| model verify + load | {ip['model_load_s']:.2f} s |",
        "",
        "### Single review per request: req/s (median [min-max]) and latency (median over rounds)",
        "",
        *_table(data, "single"),
        "",
        *_fixed_table(data),
        f"### {s['batch']} reviews per request: req/s (x{s['batch']} = reviews/s)",
        "",
        *_table(data, "list"),
        "",
        "*errors* are wrk's non-2xx answers and socket errors. For reviewserve they are 503 `overloaded` sheds "
        "(`MAX_QUEUE_MS`, 20 ms as shipped): a closed loop of 32 clients on 2 workers queues 16 requests per "
        "worker, past the budget for 32-review lists (several ms each), and every shed client sends its next "
        "request at once, so that cell's req/s counts mostly sheds. Its 200s are what the open-loop overload "
        "benchmark below measures properly.",
        "",
        "### reviewserve / peer requests per second, pair by pair within a round: median [min-max]",
        "",
        "Above 1: reviewserve answered more requests per second than the peer in the same round.",
        "",
        *_ratio_table(data),
        "",
        "### Memory after the load: PSS of all the server's processes (median over rounds)",
        "",
        "| server | processes | PSS MiB | summed RSS MiB |",
        "|---|---|---|---|",
    ]
    for name in data["servers"]:
        rows = [x for x in data["memory"] if x["server"] == name]
        if rows:
            out.append(
                f"| {name} | {rows[0]['processes']} | {statistics.median(x['pss_mib'] for x in rows):.0f} | "
                f"{statistics.median(x['rss_sum_mib'] for x in rows):.0f} |"
            )
    pngs = plot(data, doc.parent / "benchmarks")
    out += ["", *[f"![{p}](benchmarks/{p})" for p in pngs], ""]
    return out


def _slow_section(data: dict) -> list[str]:
    r = data["result"]
    out = [
        f"Run `{data['command']}` at {data['started']} (load average at start {data['load_average_start']}). "
        f"{data['settings']['connections']} connections held open against reviewserve "
        f"(`make run` defaults): {data['settings']['headers']} trickling header lines, "
        f"{data['settings']['body']} sending full headers then trickling the body, {data['settings']['idle']} "
        f"idle keep-alive after one request; one line/byte every {data['settings']['interval_s']:g} s; "
        "a connection the server closes (a worker recycled, a stall limit) is opened again at once. "
        f"Meanwhile {data['settings']['normal_connections']} keep-alive Python clients sent normal single-review "
        f"requests for {data['settings']['normal_seconds']:g} s ({data['settings']['request_timeout_s']:g} s "
        "timeout; every request sent is answered or counted failed).",
        "",
        "| figure | value |",
        "|---|---|",
        f"| slow connections opened / still open at the end | {r['slow_opened']} / {r['slow_open_at_end']} |",
        f"| slow connections closed by the server, by kind / reopened | {r['slow_closed_by_kind']} / "
        f"{r.get('slow_reopened', 0)} |",
        f"| idle keep-alive connections whose one request was answered | {r['idle_answered']} of "
        f"{data['settings']['idle']} |",
        f"| normal requests sent / answered | {r['normal']['sent']} / {r['normal']['answered']} "
        f"({r['normal']['rps']:.1f} req/s) |",
        f"| normal requests failed (not 200, socket errors, timeouts) | {r['normal']['failed']} "
        f"{r['normal']['socket_error_kinds'] or ''} |",
        f"| normal p50 / p99 of those answered | {r['normal']['p50_ms']:.1f} / {r['normal']['p99_ms']:.1f} ms |",
        f"| the same load without slow clients (same run, before): req/s, p99, failed | "
        f"{r['baseline']['rps']:.1f}, {r['baseline']['p99_ms']:.1f} ms, {r['baseline']['failed']} |",
        f"| server PSS before / with the slow clients | {r['pss_before_mib']:.0f} / {r['pss_during_mib']:.0f} MiB |",
        f"| a stalled connection (partial headers, then nothing) closed after | {r['stall']} |",
        f"| a connection that sends nothing closed after | {r['stall_silent']} |",
        "",
    ]
    return out


def _soak_section(data: dict, doc_folder: Path | None = None, plot_name: str = "soak.png") -> list[str]:
    r = data["result"]
    s = data["settings"]
    out = [
        f"Run `{data['command']}` at {data['started']} (load average at start {data['load_average_start']}): "
        f"{s['seconds']:g} s at c={s['connections']}, mixed traffic ({s['mix']}), reviewserve with "
        f"`MAX_REQUESTS={s['max_requests']}` `MAX_REQUESTS_JITTER={s['jitter']}`"
        + (f" `MAX_QUEUE_MS={s['max_queue_ms']:g}`" if s.get("max_queue_ms") is not None else "")
        + " (other settings as shipped).",
        "",
        "| figure | value |",
        "|---|---|",
        f"| requests sent / answered | {r['sent']} / {r['answered']} ({r['rps']:.1f} req/s) |",
        f"| answers by status | {r['by_status']} |",
        f"| 5xx | {r['5xx']} |",
        *(
            [f"| shed (503 overloaded, `/metrics` reviewserve_requests_shed_total) | {r['metrics_shed']:.0f} |"]
            if "metrics_shed" in r
            else []
        ),
        f"| socket errors | {r['socket_errors']} {r['socket_error_kinds']} |",
        f"| unexpected statuses (a good request not 200, a bad one not its 4xx) | {r['unexpected']} |",
        f"| p50 / p99 | {r['p50_ms']:.1f} / {r['p99_ms']:.1f} ms |",
        f"| workers that served requests (recycles = that minus the worker count) | {r['workers_seen']} |",
        f"| requests per worker pid ({r['per_worker_source']}), min / median / max | "
        f"{min(r['per_worker'].values())} / {statistics.median(r['per_worker'].values()):.0f} / "
        f"{max(r['per_worker'].values())} (the last live workers are cut short by the end of the run) |",
        *(
            [
                f"| share of each ~10 s interval's requests served by its busiest worker: median / max | "
                f"{statistics.median(r['busiest_worker_share']):.0%} / {max(r['busiest_worker_share']):.0%} "
                f"(with {r.get('workers', 2)} workers an even split is {1 / r.get('workers', 2):.0%}; "
                "100% = the others idle) |"
            ]
            if r.get("busiest_worker_share")
            else []
        ),
        f"| live workers' RSS summed, 10 s in / at the end / highest sample (MiB) | {r['rss_start_mib']:.0f} / "
        f"{r['rss_end_mib']:.0f} / {r.get('rss_max_mib', r['rss_end_mib']):.0f} ({r['rss_growth_pct']:+.1f} %) |",
        f"| `/metrics` flask_http_request_total (POST) vs answered | {r['metrics_requests']} vs {r['answered']} |",
        f"| `/metrics` reviewserve_predictions_total vs reviews scored | {r['metrics_predictions']} vs "
        f"{r['reviews_scored']} |",
        f"| `/metrics` reviewserve_request_reviews_count vs prediction requests answered 200 | "
        f"{r['metrics_request_reviews_count']} vs {r['ok_prediction_requests']} |",
        "",
    ]
    if r.get("samples"):
        out += _soak_samples(data, doc_folder, plot_name)
    return out


SOAK_COLUMNS = (
    ("t_s", "time (s)"),
    ("answered", "answered"),
    ("recycles", "recycles"),
    ("workers_rss_mib", "workers RSS (MiB)"),
    ("master_rss_mib", "master RSS (MiB)"),
    ("open_files", "open files"),
    ("metrics_files", "metrics files"),
    ("metrics_kib", "metrics KiB"),
    ("metrics_ms", "/metrics ms"),
    ("p99_ms", "p99 ms"),
)


def _soak_samples(data: dict, doc_folder: Path | None, plot_name: str = "soak.png") -> list[str]:
    """The per-minute table of what must stay flat, first vs last, and the plot."""
    r = data["result"]
    rows = r["samples"]
    every = data["settings"].get("sample_seconds", 60)
    out = [
        f"Sampled every {every:g} s (the first row 10 s into the load, the last after it): live workers' RSS, "
        "open files of the master and workers, files and bytes of the metrics folder (all servers' folders "
        "below `PROMETHEUS_MULTIPROC_DIR`), median of 3 `GET /metrics`, p99 of the requests answered since "
        "the previous row. Every scrape was checked against the previous one: "
        f"**{r.get('counter_decrease_count', 0)}** counter/histogram samples went down in "
        f"{r.get('metrics_scrapes_checked', 0)} scrapes; workers recycled: **{r.get('recycles', 0)}**.",
        "",
    ]
    if len(rows) >= 2:
        first, last = rows[0], rows[-1]
        out += ["| figure | first row | last row |", "|---|---|---|"]
        out += [f"| {title} | {first.get(key)} | {last.get(key)} |" for key, title in SOAK_COLUMNS[2:]]
        out += [""]
    if doc_folder is not None:
        recycling = data["settings"].get("max_requests", 1) != 0
        name = plot_soak(rows, doc_folder / "benchmarks", plot_name, recycling)
        out += [f"![soak: flat over time](benchmarks/{name})", ""]
    out += ["| " + " | ".join(title for _, title in SOAK_COLUMNS) + " |", "|" + "---|" * len(SOAK_COLUMNS)]
    out += ["| " + " | ".join(str(row.get(key)) for key, _ in SOAK_COLUMNS) + " |" for row in rows]
    out += [""]
    return out


def plot_soak(rows: list[dict], folder: Path, name: str = "soak.png", recycling: bool = True) -> str:
    """Four panels over time: RSS, open files, metrics folder, /metrics time and p99 (PNG); returns its name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    minutes = [row["t_s"] / 60 for row in rows]
    fig, axes = plt.subplots(2, 2, figsize=(11, 6.5), sharex=True)
    panels = [
        (axes[0][0], "memory (MiB)", [("workers_rss_mib", "live workers' RSS"), ("master_rss_mib", "master RSS")]),
        (axes[0][1], "open files", [("open_files", "master + workers")]),
        (axes[1][0], "metrics folder", [("metrics_files", "files"), ("metrics_kib", "KiB")]),
        (axes[1][1], "milliseconds", [("metrics_ms", "GET /metrics (median of 3)"), ("p99_ms", "p99 of the minute")]),
    ]
    for ax, ylabel, series in panels:
        for key, label in series:
            ax.plot(minutes, [row.get(key) for row in rows], marker=".", label=label)
        ax.set_ylabel(ylabel)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[1]:
        ax.set_xlabel("minutes into the soak")
    fig.suptitle(f"Soak {'with' if recycling else 'without'} worker recycling: sampled while the load runs")
    fig.tight_layout()
    fig.savefig(folder / name, dpi=110)
    plt.close(fig)
    return name


def write(
    doc: Path, peers: dict | None = None, slow: dict | None = None, soak: dict | None = None,
    overload: dict | None = None, soak_no_recycling: dict | None = None,
) -> None:  # fmt: skip
    """Render docs/benchmarks.md from the given results (or the committed ones)."""
    peers = peers or load("peers")
    slow = slow or load("slow")
    soak = soak or load("soak")
    soak_no_recycling = soak_no_recycling or load("soak_no_recycling")
    overload = overload or load("overload")
    out = [
        "# Benchmarks",
        "",
        "Written by `make bench` (reviewserve against its peers), `make bench-slow` (slow clients), "
        "`make bench-soak` (soak with recycling) and `make bench-overload` (open-loop overload); raw numbers in "
        "`benchmarks/results/`. Rerun them on the "
        "machine at hand: every figure below comes from one run of the command named above it.",
        "",
        "## reviewserve and its peers (`make bench`)",
        "",
    ]
    out += _peers_section(peers, doc) if peers else ["Not run yet.", ""]
    out += ["## Slow clients (`make bench-slow`)", ""]
    out += _slow_section(slow) if slow else ["Not run yet.", ""]
    out += ["## Soak with worker recycling (`make bench-soak`)", ""]
    out += _soak_section(soak, doc.parent) if soak else ["Not run yet.", ""]
    if soak_no_recycling:
        out += [
            "### Without recycling (`MAX_REQUESTS=0`, the default)",
            "",
            "The same soak with workers never recycled: each worker's RSS over its whole life, the evidence for "
            "the default (docs/configuration.md, \"Worker recycling\").",
            "",
        ]
        out += _soak_section(soak_no_recycling, doc.parent, "soak-no-recycling.png")
    out += ["## Overload: open-loop arrival rates above capacity (`make bench-overload`)", ""]
    out += overload_report.section(overload, doc) if overload else ["Not run yet.", ""]
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text("\n".join(out).rstrip() + "\n")
