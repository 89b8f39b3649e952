"""Issue 17 item 4: `make test` installs the system packages it needs (Debian, root/sudo) or stops with the list.

.ci/system-packages runs here for real with a PATH that lacks some tools; apt-get is a recorder that
"installs" a package by putting its real binary on that PATH, so the script's re-check sees the result.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".ci" / "system-packages"
UTILITIES = ("id", "sort", "tr", "sed", "env", "bash", "python3")  # what the script itself runs
APT_RECORDER = """#!/bin/sh
echo "$*" >> "{log}"
if [ "$1" = install ]; then
  for package in "$@"; do
    [ -x "/usr/bin/$package" ] && /bin/ln -sf "/usr/bin/$package" "{bin}/$package"
  done
fi
exit 0
"""


def needs() -> list[tuple[str, str]]:
    """(command or absolute path, Debian package) pairs, read from the script."""
    block = SCRIPT.read_text().split("NEEDS=(", 1)[1].split(")", 1)[0]
    return [tuple(entry.split(" ")) for entry in re.findall(r'"([^"]+)"', block)]  # type: ignore[misc]


def _bin(tmp_path: Path, without: set[str], apt: bool) -> tuple[Path, Path]:
    """A PATH folder with every needed command except ``without`` (and an apt-get recorder if ``apt``)."""
    bin_dir, log = tmp_path / "bin", tmp_path / "apt.log"
    bin_dir.mkdir()
    commands = [c for c, _ in needs() if not c.startswith("/")] + list(UTILITIES)
    for command in commands:
        real = shutil.which(command, path="/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin")
        assert real, f"{command} must be installed on the machine running this test"
        if command not in without:
            (bin_dir / command).symlink_to(real)
    if apt:
        recorder = bin_dir / "apt-get"
        recorder.write_text(APT_RECORDER.format(log=log, bin=bin_dir))
        recorder.chmod(recorder.stat().st_mode | stat.S_IXUSR)
    return bin_dir, log


def _run(bin_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(bin_dir), "HOME": str(bin_dir.parent)}
    return subprocess.run(
        [str(bin_dir / "bash"), str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_nothing_to_do_says_nothing(tmp_path: Path) -> None:
    """Everything installed: exit 0, silent."""
    bin_dir, _ = _bin(tmp_path, set(), apt=False)
    result = _run(bin_dir)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.skipif(os.geteuid() != 0, reason="the install path runs apt-get as root (or with sudo)")
def test_debian_as_root_installs_what_is_missing_and_says_so(tmp_path: Path) -> None:
    """On Debian as root: apt-get update + install of exactly the missing packages, announced on stderr."""
    bin_dir, log = _bin(tmp_path, {"wrk", "redis-server"}, apt=True)
    result = _run(bin_dir)
    assert result.returncode == 0, result.stderr
    assert "make test: installing the system packages the tests need: redis-server wrk" in result.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == "update -qq"
    assert calls[1].startswith("install -y") and calls[1].split()[-2:] == ["redis-server", "wrk"]


def test_elsewhere_it_stops_at_once_with_the_exact_list(tmp_path: Path) -> None:
    """No apt-get: exit 1 at once, naming exactly the missing packages and the command to install them."""
    bin_dir, _ = _bin(tmp_path, {"wrk", "redis-server", "shellcheck", "prometheus-pushgateway", "ss"}, apt=False)
    result = _run(bin_dir)
    assert result.returncode == 1
    assert "  iproute2 prometheus-pushgateway redis-server shellcheck wrk\n" in result.stderr


def test_make_test_runs_it_first() -> None:
    """`make test` installs the system packages before anything else (and .ci/run relies on that)."""
    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", "test"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert dry.stdout.splitlines()[0] == "bash .ci/system-packages"
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith("make test")


def test_readme_lists_every_package() -> None:
    """The README names every system package `make test` needs."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("make test     #", 1)[1].split("\n## ", 1)[0]
    packages = {p for _, p in needs()} | {"python3-venv"}
    assert not [p for p in packages if f" {p} " not in section.replace("`", " ").replace("\n", " ")]


TOOLS = ("nginx", "shellcheck", "pushgateway", "redis", "wrk", "curl", "postgres", "promtool", "npm", "docker")


def test_no_test_skips_for_a_listed_tool() -> None:
    """A missing tool the README lists fails a test loudly (tests/systools.py), never skips it."""
    skips = []
    for path in (ROOT / "tests").rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            skip = re.search(r"pytest\.skip\(|_skip_or_fail\(|skipif\(", line)
            missing = re.search(r"not (installed|found)|apt-get install", line)
            if skip and missing and any(t in line.lower() for t in TOOLS):
                skips.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not skips, "\n".join(skips)
    assert json.dumps(sorted({p for _, p in needs()}))  # the list parses
