"""Start-up check of a folder the process must write to: one clear line instead of an OSError traceback.

On a read-only root filesystem (``docker run --read-only``, the chart's pods) the folders reviewserve writes
to must be mounted writable; without the mount the first write deep in prometheus-client would end in a raw
``OSError: [Errno 30] Read-only file system`` traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def require_writable(path: Path, setting: str) -> None:
    """Create ``path`` if needed and write a probe file in it; on failure print one line and exit 1.

    ``setting`` is the environment variable that chose the folder (named in the message).
    """
    probe = path / f".reviewserve-write-test-{os.getpid()}"
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe.touch()
        probe.unlink()
    except OSError as exc:
        sys.stderr.write(
            f"reviewserve: {setting}={path} must be writable ({exc.strerror or exc}). On a read-only root "
            f"filesystem mount a tmpfs there: docker run --read-only --tmpfs /tmp --tmpfs {path} ... "
            "(Kubernetes: an emptyDir volume; the chart mounts one), or point "
            f"{setting} at a writable folder.\n"
        )
        raise SystemExit(1) from None
