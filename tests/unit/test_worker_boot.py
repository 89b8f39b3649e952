"""The gevent worker's boot: gevent's monkey-patching must not re-read every package's metadata per worker.

A recycled worker is replaced only after it has exited, so its replacement's boot is time with one worker
fewer (with ``WORKERS=1``, time nobody answers). gevent's ``patch_all`` looks up its plugin entry points
25 times; ``ReviewserveWorker.patch`` answers them from the list the master read once. Run in a fresh
interpreter: patching changes the process for good.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    from importlib import metadata

    from reviewserve.web.worker import ReviewserveWorker

    scans = []
    original = metadata.entry_points
    metadata.entry_points = lambda **params: scans.append(params) or original(**params)
    worker = ReviewserveWorker.__new__(ReviewserveWorker)  # no gunicorn arbiter: only what patch() uses
    worker.sockets = []
    worker.patch()
    from gevent import monkey

    assert monkey.is_module_patched("socket") and monkey.is_module_patched("threading")
    assert metadata.entry_points is not original, "patch() must put back whatever it found"
    print(len(scans))
    """
)


def test_patch_reads_no_package_metadata_and_still_patches() -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0", f"entry point scans during patch_all: {result.stdout.strip()}"


def test_gevent_really_looks_plugins_up_without_it() -> None:
    """The same count through gevent's own patch_all: proves the test above can see the lookups."""
    script = SCRIPT.replace(
        "worker.patch()",
        "from gevent import monkey as m; m.patch_all()",
    ).replace('assert metadata.entry_points is not original, "patch() must put back whatever it found"\n', "")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) >= 10
