"""Fixtures for the stream tests: a real redis-server on a free port, keys per test, CLI processes.

The server is Debian's ``/usr/bin/redis-server`` (7.0), started without persistence
(``--save '' --appendonly no``) in a temporary directory and shut down after the session. Every
test gets its own stream/results/dead-letter keys, so tests never see each other's messages.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
import requests

from tests.conftest import MODEL_DIR, ROOT, free_port
from tests.systools import missing_tool

REDIS_SERVER = os.environ.get("REDIS_SERVER", "/usr/bin/redis-server")


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> object:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class RedisServer:
    """A redis-server process started by the tests."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private redis-server (no RDB, no AOF) for the whole session."""
    if not Path(REDIS_SERVER).exists() and shutil.which("redis-server") is None:
        missing_tool("redis-server", "redis-server")
    binary = REDIS_SERVER if Path(REDIS_SERVER).exists() else str(shutil.which("redis-server"))
    workdir = tmp_path_factory.mktemp("redis")
    port = free_port()
    log_path = workdir / "redis.log"
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    cmd += ["--dir", str(workdir), "--logfile", str(log_path), "--daemonize", "no"]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    server = RedisServer(process, port, log_path)
    client = server.client()

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    wait_until(answers, 20, "redis-server to answer PING")
    yield server
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass(frozen=True)
class Keys:
    """One test's stream names."""

    stream: str
    results: str
    dead: str

    def args(self) -> list[str]:
        """The CLI flags naming these streams."""
        return ["--stream", self.stream, "--results", self.results, "--dead-letter", self.dead]


@pytest.fixture
def keys() -> Keys:
    """Fresh keys (a shared hash tag, as Redis Cluster would need) for one test."""
    tag = uuid.uuid4().hex[:10]
    return Keys(f"{{{tag}}}reviews", f"{{{tag}}}predictions", f"{{{tag}}}reviews:dead")


@pytest.fixture
def r(redis_server: RedisServer) -> redis.Redis:
    """A client of the test server (strings decoded)."""
    return redis_server.client()


@dataclass
class Proc:
    """A ``reviewserve stream ...`` subprocess with its log."""

    process: subprocess.Popen[bytes]
    log_path: Path
    name: str
    health_port: int | None = None
    stopped: bool = field(default=False)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}"

    def wait_ready(self, timeout: float = 60) -> None:
        """Wait for 200 on /readyz."""

        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.log()}")
            try:
                return requests.get(self.url + "/readyz", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(ready, timeout, f"{self.name} to be ready", interval=0.1)

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM and wait for the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"{self.name} did not exit within {timeout}s of SIGTERM:\n{self.log()}") from None

    def kill9(self) -> None:
        """SIGKILL, no chance to clean up."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


class Procs:
    """Starts ``reviewserve stream`` processes; kills whatever is left at teardown."""

    def __init__(self, tmp_path: Path, redis_url: str, keys: Keys) -> None:
        self.tmp_path = tmp_path
        self.redis_url = redis_url
        self.keys = keys
        self.started: list[Proc] = []

    def _spawn(self, name: str, args: list[str], stdin: bytes | None = None, **env: str) -> Proc:
        log_path = self.tmp_path / f"{name}.log"
        full_env = {**os.environ, "MODEL_PATH": str(MODEL_DIR), "REDIS_URL": self.redis_url, **env}
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "reviewserve.cli", "stream", *args],
                cwd=ROOT,
                env=full_env,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        if stdin is not None:
            assert process.stdin is not None
            process.stdin.write(stdin)
            process.stdin.close()
        proc = Proc(process, log_path, name)
        self.started.append(proc)
        return proc

    def consumer(self, name: str, group: str = "scorers", *extra: str, wait: bool = True, **env: str) -> Proc:
        """Start ``stream consume`` for this test's keys, with a health port; wait until ready."""
        port = free_port()
        args = ["consume", "--group", group, "--consumer", name, *self.keys.args()]
        args += ["--health-port", str(port), "--block-ms", "200", *extra]
        proc = self._spawn(f"consumer-{group}-{name}", args, **env)
        proc.health_port = port
        if wait:
            proc.wait_ready()
        return proc

    def producer(self, name: str, lines: list[str], *extra: str) -> Proc:
        """Start ``stream produce`` reading ``lines`` from stdin."""
        data = "".join(line + "\n" for line in lines).encode()
        return self._spawn(f"producer-{name}", ["produce", "--stream", self.keys.stream, *extra], stdin=data)

    def cleanup(self) -> None:
        for proc in self.started:
            if proc.process.poll() is None:
                proc.process.kill()
                proc.process.wait()


@pytest.fixture
def procs(tmp_path: Path, redis_server: RedisServer, keys: Keys) -> Iterator[Procs]:
    """Start stream CLI processes for this test; any still running are killed at teardown."""
    factory = Procs(tmp_path, redis_server.url, keys)
    yield factory
    factory.cleanup()


ADJECTIVES = ["great", "terrible", "fine", "awful", "amazing", "broken", "lovely", "useless", "solid", "poor"]
NOUNS = ["battery", "screen", "service", "sound", "case", "charger", "app", "food", "price", "staff"]


def reviews(count: int, tag: str = "", words: int = 0) -> list[str]:
    """``count`` distinct, realistic-enough review lines (``words`` extra filler words make them longer)."""
    filler = " ".join(NOUNS[i % len(NOUNS)] for i in range(words))
    return [f"{tag}{i}: the {NOUNS[i % 10]} is {ADJECTIVES[(i // 10) % 10]} {filler}".rstrip() for i in range(count)]


PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A private PostgreSQL 15 (fsync off) on a free port; its SQLAlchemy URL (psycopg 3, the runtime driver)."""
    import pwd
    import tempfile

    if not (PG_BIN / "initdb").exists():
        missing_tool(f"{PG_BIN}/initdb", "postgresql-15")
    # initdb refuses root: as root, run initdb and the server as the postgres user (a direct child,
    # so signals reach it).
    as_user: dict[str, int] = {}
    # Not under pytest's tmp dir: that is private to root, and the server may run as postgres.
    workdir = Path(tempfile.mkdtemp(prefix="reviewserve-stream-pg-"))
    data = workdir / "data"
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(workdir, user.pw_uid, user.pw_gid)
        as_user = {"user": user.pw_uid, "group": user.pw_gid}
    subprocess.run(
        [str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"],
        check=True,
        capture_output=True,
        cwd=workdir,
        **as_user,  # type: ignore[arg-type]
    )
    port = free_port()
    log = workdir / "postgres.log"
    cmd = [str(PG_BIN / "postgres"), "-D", str(data), "-p", str(port), "-k", str(workdir)]
    cmd += ["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", f"log_directory={workdir}"]
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=out, cwd=workdir, **as_user)  # type: ignore[call-overload]

    def ready() -> bool:
        probe = [str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)]
        return subprocess.run(probe, capture_output=True, check=False).returncode == 0

    try:
        wait_until(ready, 60, "PostgreSQL to accept connections", interval=0.2)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        process.send_signal(signal.SIGINT)  # fast shutdown
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)
