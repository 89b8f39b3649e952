"""Run the README's shell blocks as written, in a fresh copy of the repository with its own `make install`.

Only what a shared machine forces is changed, through the knobs the README itself documents: the web port
(`PORT`, so `localhost:9696` becomes the test's free port) and the Redis port (`REDIS_URL`, `redis-server
--port`, `redis-cli -p`), so parallel runs never meet. Commands that run until stopped (`make run`,
`reviewserve serve`, `stream consume`) are started in the background, waited for, and stopped by process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis
import requests

# Values that change from run to run: compared by key only.
VOLATILE = {"seconds", "rows_per_s", "last_delivered_id"}
LONG_RUNNING = re.compile(r"(^|\s)make run\b|reviewserve serve\b|reviewserve stream consume\b")
# pytest under `make test` inherits make's variables: a nested make would then print "Entering directory".
DROPPED_ENV = ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES", "VIRTUAL_ENV", "PYTHONPATH", "MODEL_PATH")


@dataclass
class Command:
    """One shell command of a README block, with the output the README shows after it (comment lines)."""

    text: str
    shown: list[str] = field(default_factory=list)

    def shown_json(self) -> dict | None:
        """The shown output when it is a JSON object (possibly over several comment lines)."""
        joined = " ".join(self.shown).strip()
        if not joined.startswith("{"):
            return None
        return json.loads(joined)


def sections(readme: str) -> dict[str, list[list[Command]]]:
    """``## heading`` -> its ```bash blocks, each parsed into commands."""
    found: dict[str, list[list[Command]]] = {}
    heading, block = "", None
    for line in readme.splitlines():
        if block is None and line.startswith("## "):
            heading = line[3:].strip()
        elif block is None and line.strip() == "```bash":
            block = []
        elif block is not None and line.strip() == "```":
            found.setdefault(heading, []).append(parse_block(block))
            block = None
        elif block is not None:
            block.append(line)
    return found


def parse_block(lines: list[str]) -> list[Command]:
    """Commands of a block: continuation lines joined; `# ...` lines after a command are its shown output."""
    commands: list[Command] = []
    pending = ""
    for line in lines:
        stripped = line.strip()
        if not pending and stripped.startswith("#"):
            if commands:
                commands[-1].shown.append(stripped.lstrip("#").strip())
            continue
        if not stripped and not pending:
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        commands.append(Command(pending + stripped))
        pending = ""
    return commands


def compare(shown: dict, actual: dict) -> None:
    """The README's JSON and the real one: the same keys, the same values except the volatile ones."""
    assert set(shown) == set(actual), f"README shows keys {sorted(shown)}, the command printed {sorted(actual)}"
    differ = {k: (shown[k], actual[k]) for k in shown if k not in VOLATILE and shown[k] != actual[k]}
    assert not differ, f"README shows != printed: {differ}"


class Sandbox:
    """A fresh copy of the repository (tracked and new files) beside a link to the shared data."""

    def __init__(self, repo: Path, shared_data: Path, tmp: Path, web_port: int, redis_port: int) -> None:
        self.root = tmp / "reviewserve"
        self.tmp = tmp
        files = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=repo, capture_output=True, check=True, timeout=60,
        ).stdout.decode().split("\0")  # fmt: skip
        for name in filter(None, files):
            source = repo / name
            if source.is_file() and not name.startswith(".tools"):
                target = self.root / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
        (tmp / "shared").mkdir()
        (tmp / "shared" / "data").symlink_to(shared_data)  # the README's ../shared/data
        self.web_port, self.redis_port = web_port, redis_port
        self.env = {k: v for k, v in os.environ.items() if k not in DROPPED_ENV}
        self.env.update(
            PORT=str(web_port),
            REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
            PATH="/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
        )
        self.background: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.log = tmp / "commands.log"

    def adapt(self, command: str) -> str:
        """The command with the test's ports (the README's knobs) in place of the defaults."""
        command = command.replace("localhost:9696", f"localhost:{self.web_port}")
        command = re.sub(
            r"\bredis-server ",
            f"redis-server --port {self.redis_port} --dir {self.tmp} --pidfile {self.tmp}/redis.pid ",
            command,
        )
        return re.sub(r"\bredis-cli ", f"redis-cli -p {self.redis_port} ", command)

    def run(self, command: str, timeout: float = 600) -> str:
        """Run one command to completion (bash, pipefail); its stdout. Fails the test on a non-zero exit."""
        # curl: the status code after the body, so an error answer cannot pass for output.
        prelude = "set -o pipefail\ncurl() { command curl -sS -w '\\n[%{http_code}]\\n' \"$@\"; }\n"
        with self.log.open("a") as log:
            log.write(f"$ {command}\n")
        proc = subprocess.run(
            ["bash", "-c", prelude + self.adapt(command)], cwd=self.root, env=self.env, capture_output=True,
            text=True, timeout=timeout, check=False,
        )  # fmt: skip
        with self.log.open("a") as log:
            log.write(proc.stdout + proc.stderr)
        assert proc.returncode == 0, f"README command failed ({proc.returncode}): {command}\n{proc.stdout}{proc.stderr}"
        return proc.stdout

    def start(self, command: str, ready: Callable[[], bool], timeout: float = 300) -> subprocess.Popen[bytes]:
        """Start a long-running command in the background and wait until ``ready()``."""
        out = (self.tmp / f"background-{len(self.background)}.log").open("wb")
        proc = subprocess.Popen(
            ["bash", "-c", self.adapt(command)], cwd=self.root, env=self.env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.background.append((command, proc))
        deadline = time.monotonic() + timeout
        while not ready():
            assert proc.poll() is None, f"{command} exited {proc.returncode}:\n{Path(out.name).read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{command} not ready in {timeout} s"
            time.sleep(0.5)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> int:
        """SIGTERM the command's process group (Ctrl-C/SIGTERM as the README says); its exit code."""
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        return proc.returncode

    def web_ready(self) -> bool:
        """The web server answers /readyz 200 on the test's port."""
        try:
            return requests.get(f"http://127.0.0.1:{self.web_port}/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def group_done(self, group: str, stream: str = "reviews") -> bool:
        """The consumer group has read and acknowledged everything in the stream."""
        try:
            groups = redis.Redis(port=self.redis_port).xinfo_groups(stream)
        except redis.RedisError:
            return False
        mine = [g for g in groups if g["name"].decode() == group]
        return bool(mine) and mine[0]["pending"] == 0 and mine[0].get("lag") == 0

    def close(self) -> None:
        """Stop whatever is still running: background commands, then the README's daemonized redis-server."""
        for _, proc in self.background:
            self.stop(proc)
        pidfile = self.tmp / "redis.pid"
        if pidfile.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pidfile.read_text()), signal.SIGTERM)
