"""What the benchmark ran on: cores, CPU model, load, versions."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from benchmarks.wrk import WRK


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> tuple[float, float, float]:
    """1, 5 and 15-minute load averages."""
    return os.getloadavg()


def describe() -> dict:
    """Cores, CPU model, memory, kernel, Python, wrk."""
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    wrk = subprocess.run([WRK, "--version"], capture_output=True, text=True)
    return {
        "cores_online": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": (wrk.stdout or wrk.stderr).splitlines()[0].split(" Copyright")[0] if (wrk.stdout or wrk.stderr) else "?",
        "load_average_start": load_average(),
    }
