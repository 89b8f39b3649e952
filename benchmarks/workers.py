"""Which gunicorn worker answered how many requests: from the request log or the metric files.

The request log line carries the worker's pid when the server logs one (``pid`` or ``process``);
otherwise prometheus-client's multiprocess folder has one ``counter_<pid>.db`` per live worker (in the
server's own subfolder; an exited worker's counts are folded into ``counter_archive.db``), whose
``flask_http_request_total`` is that worker's request count so far.
"""

from __future__ import annotations

import json
import struct
import subprocess
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client.mmap_dict import MmapedDict

REQUEST_COUNTER = "flask_http_request_total"


def counts_from_metrics_dir(metrics_dir: Path, metric: str = REQUEST_COUNTER) -> Counter[int]:
    """Requests per live worker pid from the multiprocess counter files (any server folder below ``metrics_dir``)."""
    out: Counter[int] = Counter()
    for path in Path(metrics_dir).rglob("counter_*.db"):
        try:
            pid = int(path.stem.rsplit("_", 1)[1])
        except ValueError:
            continue
        try:
            values = list(MmapedDict.read_all_values_from_file(str(path)))
        except (FileNotFoundError, struct.error):  # folded away meanwhile, or just created and still empty
            continue
        for key, value, *_ in values:
            if json.loads(key)[1] == metric:
                out[pid] += int(value)
    return out


def log_records(lines: Iterable[str]) -> Iterator[dict]:
    """The JSON records of a server log (other lines, e.g. a tool's banner, skipped)."""
    for line in lines:
        if not line.startswith("{"):
            continue
        try:
            yield json.loads(line)
        except ValueError:
            continue


def pids_from_log(lines: list[str]) -> list[int] | None:
    """The worker pid of each request log line, in order; None if the log carries no pid."""
    pids = []
    for record in log_records(lines):
        if record.get("message") != "request":
            continue
        pid = record.get("pid", record.get("process"))
        if pid is None:
            return None
        pids.append(int(pid))
    return pids


def children(pid: int) -> list[int]:
    """Direct child pids (gunicorn's workers of a master)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    found = [pid]
    for child in children(pid):
        found.extend(tree(child))
    return found


def memory_kib(pid: int) -> dict[str, int]:
    """Pss and Rss (KiB) of one process from /proc/<pid>/smaps_rollup (0 if it is gone)."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
    except OSError:
        return {"Pss": 0, "Rss": 0}
    fields = {}
    for line in lines:
        key, value = line.split(":", 1)
        fields[key] = int(value.split()[0])
    return {"Pss": fields.get("Pss", 0), "Rss": fields.get("Rss", 0)}


def tree_memory_mib(pid: int) -> dict[str, float]:
    """Summed PSS and RSS (MiB) of a process tree, with its process count."""
    pids = tree(pid)
    mem = [memory_kib(p) for p in pids]
    return {
        "processes": len(pids),
        "pss_mib": sum(m["Pss"] for m in mem) / 1024,
        "rss_sum_mib": sum(m["Rss"] for m in mem) / 1024,
    }
