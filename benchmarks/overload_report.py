"""Figures of `make bench-overload` from the open-loop records: per-load rows, targets, the doc section, the plot."""

from __future__ import annotations

import statistics
from pathlib import Path

from benchmarks.inprocess import percentile
from benchmarks.openloop import STALL_S

WINDOW_S = 0.5  # recovery is judged on windows of this length (by due time)
RECOVERY_TOLERANCE = 1.2  # "back to the 1.0x p99": a window's p99 within 20 % (or 1 ms) of it
# A generator stall (openloop.STALL_S) sends the requests due during it in one burst, which then queues at the
# server: a window is not judged if the generator stalled in it or this long before it.
STALL_SPILL_S = 0.1
STALL_MS = STALL_S * 1000
# issue 15 targets, for reviewserve
GOODPUT_MIN = 0.9  # of capacity, at 2x and 4x
P99_2X_MAX_MS = 50.0
SHED_P99_MAX_MS = 5.0
RECOVERY_MAX_S = 5.0


_CLOCK_TEXT = {
    "tick": "Clock `tick`: every 1 ms the requests that have fallen due leave together, so each latency includes "
    "up to ~1 ms of the generator's own lag (its p99 is in the raw records, `generator_lag_p99_ms`).",
    "timerfd": "Clock `timerfd`: each request leaves at its due time (a timerfd); on this 2-vCPU machine that costs "
    "the server a few points of goodput against `tick` (docs/benchmarking.md, \"The generator's clock\").",
}


def _p(values: list[float], q: float) -> float | None:
    return percentile(sorted(values), q) * 1000 if values else None


def _phase_rows(run: dict) -> list[dict]:
    raw = run["openloop"]
    rec = raw["records"]
    capacity = run["capacity"]["rps"]
    phases = raw["phases"]
    starts = []
    t = 0.0
    for phase in phases:
        starts.append(t)
        t += phase["seconds"]
    stalls = raw.get("stalls", [])
    rows = []
    baseline = None
    for index, phase in enumerate(phases):
        idx = [i for i, p in enumerate(rec["phase"]) if p == index]
        phase_stalls = [late for due, late in stalls if starts[index] <= due < starts[index] + phase["seconds"]]
        status = [rec["status"][i] for i in idx]
        ok_lat = [rec["latency"][i] for i in idx if rec["status"][i] == 200]
        shed_lat = [rec["latency"][i] for i in idx if rec["shed"][i]]
        begin = raw["t0_epoch"] + starts[index]
        polls = [r for r in run["ready"] if begin <= r[0] < begin + phase["seconds"]]
        row = {
            "label": phase["label"],
            "multiplier": phase["rate"] / capacity if capacity else 0.0,
            "offered_rps": phase["rate"],
            "seconds": phase["seconds"],
            "requests": len(idx),
            "ok": len(ok_lat),
            "goodput_rps": len(ok_lat) / phase["seconds"],
            "goodput_of_capacity": len(ok_lat) / phase["seconds"] / capacity if capacity else 0.0,
            "p50_ms": _p(ok_lat, 50),
            "p99_ms": _p(ok_lat, 99),
            "shed": len(shed_lat),
            "shed_p99_ms": _p(shed_lat, 99),
            "socket_errors": sum(1 for s in status if s in (0, -1)),
            "timeouts": sum(1 for s in status if s == -1),
            "unsent": sum(1 for s in status if s == -2),
            "other_5xx": sum(1 for i in idx if rec["status"][i] >= 500 and not rec["shed"][i]),
            "other_status": sum(1 for s in status if 0 < s < 500 and s != 200),
            "generator_lag_p99_ms": _p([rec["lag"][i] for i in idx if rec["status"][i] != -2], 99),
            "generator_stalls": len(phase_stalls),
            "generator_stall_max_ms": max(phase_stalls) * 1000 if phase_stalls else None,
            # the generator's CPU as a share of one core: on a 2-core machine it is taken from the server
            "generator_cpu": raw["phase_cpu_s"][index] / phase["seconds"] if "phase_cpu_s" in raw else None,
            "ready_polls": len(polls),
            "ready_failures": sum(1 for r in polls if not 200 <= r[1] < 400),
            "ready_p99_ms": _p([r[2] for r in polls], 99),
            "ready_max_ms": max((r[2] for r in polls), default=0.0) * 1000 if polls else None,
        }
        if phase["label"] == "1x":
            baseline = row["p99_ms"]
        if phase["label"].startswith("after "):
            judged = _recovery(rec, idx, starts[index], phase["seconds"], baseline, stalls)
            row["recovery_s"], row["recovery_unjudged_windows"] = judged
            row["recovery_every_window_s"] = _recovery(rec, idx, starts[index], phase["seconds"], baseline, [])[0]
        rows.append(row)
    return rows


def _recovery(
    rec: dict, idx: list[int], start: float, seconds: float, baseline: float | None, stalls: list[list[float]]
) -> tuple[float | None, int]:  # fmt: skip
    """Seconds after the overload until every later window's p99 (200s, by due time) is back near the 1.0x p99.

    Returns that (None: not back by the end of the stretch, or nothing answered) and how many windows were not
    judged: those the generator stalled in (or ``STALL_SPILL_S`` before), where the latency is its own.
    """
    count = max(1, round(seconds / WINDOW_S))
    bounds = [(start + w * WINDOW_S, start + (w + 1) * WINDOW_S) for w in range(count)]
    unjudged = [any(due < end and due + late + STALL_SPILL_S > begin for due, late in stalls) for begin, end in bounds]
    if baseline is None:
        return None, sum(unjudged)
    limit = max(baseline * RECOVERY_TOLERANCE, baseline + 1.0)
    windows: list[list[float]] = [[] for _ in range(count)]
    failed = [False] * count
    for i in idx:
        w = min(count - 1, int((rec["due"][i] - start) / WINDOW_S))
        if rec["status"][i] == 200:
            windows[w].append(rec["latency"][i])
        elif not rec["shed"][i]:
            failed[w] = True  # an error or a timeout is not recovered
    good = [
        skip or (bool(v) and not f and (_p(v, 99) or 0.0) <= limit)
        for v, f, skip in zip(windows, failed, unjudged, strict=True)
    ]
    if not good[-1]:
        return None, sum(unjudged)
    k = count - 1
    while k > 0 and good[k - 1]:
        k -= 1
    while k < count - 1 and unjudged[k]:  # recovered from the first window judged good, not an unjudged one
        k += 1
    if unjudged[k]:
        return None, sum(unjudged)  # no window after the overload's tail was judged: not shown to be back
    return k * WINDOW_S, sum(unjudged)


def _timeline(run: dict, step: float = 1.0) -> list[dict]:
    """Per-second (by due time) counts, p99 of the 200s and generator stalls: what a reader of a run needs."""
    rec = run["openloop"]["records"]
    if not rec["due"]:
        return []
    stall_ms: dict[int, float] = {}
    for due, late in run["openloop"].get("stalls", []):
        second = int(due / step)
        stall_ms[second] = max(stall_ms.get(second, 0.0), round(late * 1000, 1))
    bins: dict[int, dict] = {}
    for due, lat, status, shed in zip(rec["due"], rec["latency"], rec["status"], rec["shed"], strict=True):
        b = bins.setdefault(int(due / step), {"ok": [], "shed": 0, "failed": 0})
        if status == 200:
            b["ok"].append(lat)
        elif shed:
            b["shed"] += 1
        else:
            b["failed"] += 1
    return [
        {
            "t": k * step, "ok": len(b["ok"]), "shed": b["shed"], "failed": b["failed"], "p99_ms": _p(b["ok"], 99),
            "generator_stall_ms": stall_ms.get(k),  # the longest generator stall that second (None: none)
        }
        for k, b in sorted(bins.items())
    ]


def summarize(data: dict) -> dict[str, list[dict]]:
    """Per server, one row per load phase and round; replaces each run's raw records by a per-second timeline."""
    out: dict[str, list[dict]] = {}
    for run in data["runs"]:
        rows = _phase_rows(run)
        for row in rows:
            row["round"] = run.get("round", 1)
            row["capacity_rps"] = run["capacity"]["rps"]
        out.setdefault(run["server"], []).extend(rows)
        run["timeline"] = _timeline(run)
        # raw records stay in --work; the stalls are in the rows and the timeline
        run["openloop"] = {k: v for k, v in run["openloop"].items() if k not in ("records", "stalls")}
    return out


def _f(value: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def row_text(row: dict) -> str:
    """One console line for a row."""
    return (
        f"{row['label']:>9} offered {row['offered_rps']:7.0f}/s goodput {row['goodput_rps']:7.0f}/s "
        f"({row['goodput_of_capacity']:.0%}) p99 {_f(row['p99_ms'])} ms shed {row['shed']} "
        f"(p99 {_f(row['shed_p99_ms'])} ms) sockerr {row['socket_errors']} unsent {row['unsent']} "
        f"5xx {row['other_5xx']} unready {row['ready_failures']}/{row['ready_polls']}"
        + (f" gen-cpu {row['generator_cpu']:.0%}" if row.get("generator_cpu") is not None else "")
        + (
            f" gen-stalls {row['generator_stalls']} (max {row['generator_stall_max_ms']:.0f} ms)"
            if row.get("generator_stalls")
            else ""
        )
        + (f" recovery {_f(row.get('recovery_s'), '{:.1f}')} s" if "recovery_s" in row else "")
        + (f" ({row['recovery_unjudged_windows']} windows not judged)" if row.get("recovery_unjudged_windows") else "")
    )


def _spread(values: list[float | None], fmt: str = "{:.1f}") -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    med = statistics.median(vals)
    missing = len(values) - len(vals)
    text = fmt.format(med) if len(vals) == 1 else f"{fmt.format(med)} [{fmt.format(min(vals))}-{fmt.format(max(vals))}]"
    return text + (f" ({missing} never)" if missing else "")


def _rows(summary: dict, server: str, label: str) -> list[dict]:
    return [r for r in summary.get(server, []) if r["label"] == label]


def _labels(summary: dict, server: str) -> list[str]:
    seen: list[str] = []
    for r in summary.get(server, []):
        if r["label"] not in seen:
            seen.append(r["label"])
    return seen


def targets(summary: dict, server: str = "reviewserve") -> list[str]:
    """Issue 15's targets against the figures (median [min-max] over rounds)."""
    rows = summary.get(server, [])
    if not rows:
        return []

    def verdict(ok: bool | None) -> str:
        return "not measured" if ok is None else ("met" if ok else "**not met**")

    lines = ["| target (issue 15) | measured: median [min-max over rounds] | |", "|---|---|---|"]
    for label in ("2x", "4x"):
        vals = [r["goodput_of_capacity"] * 100 for r in _rows(summary, server, label)]
        lines.append(
            f"| goodput at {label} >= {GOODPUT_MIN:.0%} of capacity | {_spread(vals, '{:.0f}')} % | "
            f"{verdict(min(vals) >= GOODPUT_MIN * 100 if vals else None)} |"
        )
    vals = [r["p99_ms"] for r in _rows(summary, server, "2x")]
    ok = all(v is not None and v <= P99_2X_MAX_MS for v in vals) if vals else None
    lines.append(f"| p99 of answered at 2x <= {P99_2X_MAX_MS:g} ms | {_spread(vals)} ms | {verdict(ok)} |")
    over = [r for r in rows if r["multiplier"] > 1.01 and not r["label"].startswith("after ")]
    vals = [r["shed_p99_ms"] for r in over if r["shed"]]
    ok = all(v <= SHED_P99_MAX_MS for v in vals) if vals else None
    lines.append(
        f"| shed answers p99 <= {SHED_P99_MAX_MS:g} ms (every overload) | {_spread(vals)} ms | {verdict(ok)} |"
    )
    sock = sum(r["socket_errors"] + r["unsent"] for r in rows)
    five = sum(r["other_5xx"] for r in rows)
    unready = sum(r["ready_failures"] for r in rows)
    polls = sum(r["ready_polls"] for r in rows)
    lines.append(f"| 0 socket errors (all loads, all rounds) | {sock} | {verdict(sock == 0)} |")
    lines.append(f"| 0 5xx other than shed 503s | {five} | {verdict(five == 0)} |")
    lines.append(f"| never unready | {unready} failed of {polls} polls | {verdict(polls > 0 and unready == 0)} |")
    after = [r for r in rows if "recovery_s" in r]
    rec = [r["recovery_s"] for r in after]
    ok = all(v is not None and v <= RECOVERY_MAX_S for v in rec) if rec else None
    unjudged = sum(r.get("recovery_unjudged_windows", 0) for r in after)
    note = (
        f" ({unjudged} of {sum(round(r['seconds'] / WINDOW_S) for r in after)} windows not judged: the generator "
        f"stalled; judging them too: {_spread([r.get('recovery_every_window_s') for r in after])} s)"
        if unjudged
        else ""
    )
    lines.append(
        f"| p99 back to its 1.0x value within {RECOVERY_MAX_S:g} s after each overload | {_spread(rec)} s{note} | "
        f"{verdict(ok)} |"
    )
    return lines


def _server_table(summary: dict, server: str) -> list[str]:
    lines = [
        "| load | offered req/s | goodput req/s (of capacity) | p50 / p99 answered ms | shed (p99 ms) | "
        "socket errors / timeouts / unsent | other 5xx | readiness failed / polls (max ms) | recovery s | "
        "generator CPU (of a core) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label in _labels(summary, server):
        rows = _rows(summary, server, label)
        p50 = _spread([r["p50_ms"] for r in rows])
        p99 = _spread([r["p99_ms"] for r in rows])
        ready_max = max((r["ready_max_ms"] or 0.0) for r in rows)
        lines.append(
            f"| {label} | {_spread([r['offered_rps'] for r in rows], '{:.0f}')} | "
            f"{_spread([r['goodput_rps'] for r in rows], '{:.0f}')} "
            f"({_spread([r['goodput_of_capacity'] * 100 for r in rows], '{:.0f}')} %) | {p50} / {p99} | "
            f"{sum(r['shed'] for r in rows)} ({_spread([r['shed_p99_ms'] for r in rows if r['shed']])}) | "
            f"{sum(r['socket_errors'] - r['timeouts'] for r in rows)} / {sum(r['timeouts'] for r in rows)} / "
            f"{sum(r['unsent'] for r in rows)} | {sum(r['other_5xx'] for r in rows)} | "
            f"{sum(r['ready_failures'] for r in rows)} / {sum(r['ready_polls'] for r in rows)} ({ready_max:.0f}) | "
            f"{_spread([r.get('recovery_s') for r in rows]) if 'recovery_s' in rows[0] else ''} | "
            f"{_spread([r['generator_cpu'] * 100 for r in rows if r.get('generator_cpu') is not None], '{:.0f}')} % |"
        )
    return lines


def plot(data: dict, folder: Path) -> str:
    """Goodput and p99 (answered, and shed) against offered load, one line per server; returns the file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    summary = data["summary"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, server in enumerate(summary):
        color = f"C{i}"
        labels = [lb for lb in _labels(summary, server) if not lb.startswith("after ")]
        xs, good, p99, shed_x, shed = [], [], [], [], []
        for label in labels:
            rows = _rows(summary, server, label)
            xs.append(statistics.median(r["offered_rps"] / r["capacity_rps"] for r in rows))
            good.append(statistics.median(r["goodput_of_capacity"] * 100 for r in rows))
            vals = [r["p99_ms"] for r in rows if r["p99_ms"] is not None]
            p99.append(statistics.median(vals) if vals else float("nan"))
            vals = [r["shed_p99_ms"] for r in rows if r["shed"]]
            if vals:
                shed_x.append(xs[-1])
                shed.append(statistics.median(vals))
        axes[0].plot(xs, good, marker="o", color=color, label=server)
        axes[1].plot(xs, p99, marker="o", color=color, label=f"{server}: answered (200)")
        if shed:
            axes[1].plot(shed_x, shed, marker="x", linestyle="--", color=color, label=f"{server}: shed (503)")
    axes[0].axhline(GOODPUT_MIN * 100, color="grey", linestyle=":", label=f"target {GOODPUT_MIN:.0%}")
    axes[0].set_ylabel("goodput (200/s), % of the server's capacity")
    axes[1].set_ylabel("p99 latency from due time, ms (log)")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("offered load, x the server's closed-loop capacity")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Open-loop overload: median over rounds")
    fig.tight_layout()
    fig.savefig(folder / "overload.png", dpi=110)
    plt.close(fig)
    return "overload.png"


def section(data: dict, doc: Path) -> list[str]:
    """The "Overload" section of docs/benchmarks.md."""
    s = data["settings"]
    m = data["machine"]
    summary = data["summary"]
    out = [
        f"Run `{data['command']}` started {data['started']}, {data['wall_s']:.0f} s in all, "
        f"{s.get('rounds', 1)} round(s). Load average at start {tuple(round(x, 1) for x in m['load_average_start'])}, "
        f"at end {tuple(round(x, 1) for x in m['load_average_end'])} ({m['cores_usable']} cores, {m['cpu_model']}).",
        "",
        "- Generator: `benchmarks/openloop.py`, our own open-loop HTTP/1.1 client (asyncio Protocols, one "
        "process, keep-alive connections opened as needed): request *i* of a load is due at *i*/rate whatever the "
        "server does, and its latency counts from that due time (no coordinated omission). Chosen over "
        "`h2load --h1 --rps` because h2load sends one fixed body per run (the loads must cycle through real "
        "varied texts), limits each client to its own rate on one connection (closed loop per connection), and "
        "cannot tell a shed 503 from another 503; wrk has no arrival rate at all. "
        + _CLOCK_TEXT.get(s.get("clock", "tick"), ""),
        f"- Capacity: closed loop, `wrk -c{s['capacity_connections']}` for {s['capacity_seconds']:g} s "
        f"(after {s['warmup']:g} s warm-up), same bodies. Then one open-loop run per server: 1.0x, and "
        f"each overload ({', '.join(f'{x:g}x' for x in s['multipliers'] if x > 1)}) for {s['seconds']:g} s "
        f"followed by {s['recovery']:g} s at 1.0x (`after Nx`).",
        f"- Bodies: single reviews, each request the next of {s['texts']}. Servers as shipped "
        "(reviewserve: `make run` defaults), one at a time, on the same model; "
        + (
            f"each server pinned to CPU(s) {s['server_cpus']} (as a pod of {len(s['server_cpus'])} CPU: "
            f"reviewserve's `WORKERS` default follows), the generator, wrk and the probes to {s['generator_cpus']}."
            if s.get("server_cpus")
            else "the generator shares the cores."
        ),
        f"- Counted: goodput = 200s per second; p99 of the 200s; shed = 503 whose JSON error is "
        f"`\"code\": \"overloaded\"`; socket errors = refused/reset/closed plus timeouts ({s['timeout']:g} s); "
        f"unsent = the generator's {s['max_connections']} connections all busy (the server stopped answering); "
        f"readiness polled every {s['ready_period']:g} s on a new connection with a {s['ready_timeout']:g} s "
        "timeout (a failure = no 2xx/3xx in time); recovery = seconds after the overload until every "
        f"{WINDOW_S:g} s window's p99 is within {RECOVERY_TOLERANCE - 1:.0%} (or 1 ms) of the 1.0x p99 "
        "('-' = not within the stretch). A window is not judged when the generator itself stalled in it or "
        f"{STALL_SPILL_S * 1000:.0f} ms before it (requests leaving more than {STALL_MS:g} ms after their due time: "
        "they then arrive in a burst, and their latency is the client's); the table says how many, and the "
        "recovery when they are judged too.",
        "",
    ]
    for run in data["runs"][: len(summary)]:
        cap = [r["capacity_rps"] for r in summary[run["server"]] if r["label"] == "1x"]
        out.append(
            f"- {run['server']}: {run['label']} ({', '.join(f'{k} {v}' for k, v in run['versions'].items())}); "
            f"capacity {_spread(cap, '{:.0f}')} req/s; readiness polled at `{run['ready_url'] or 'none'}`."
        )
    out += ["", "### Targets (issue 15, reviewserve)", "", *targets(summary), ""]
    for server in summary:
        out += [f"### {server}", "", *_server_table(summary, server), ""]
    png = plot(data, doc.parent / "benchmarks")
    out += [f"![{png}](benchmarks/{png})", ""]
    return out
