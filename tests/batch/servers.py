"""Real servers for the batch tests, started and stopped by the fixtures: PostgreSQL 15, moto S3, Pushgateway."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.conftest import free_port
from tests.systools import missing_tool

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
PUSHGATEWAY = shutil.which("prometheus-pushgateway") or "/usr/bin/prometheus-pushgateway"
PG_USER = "nobody"  # PostgreSQL refuses to run as root


@dataclass
class Postgres:
    """A PostgreSQL cluster in a temporary folder, listening on 127.0.0.1:port (trust auth, user postgres)."""

    port: int
    data: Path
    options: str = ""  # the server options of `pg_ctl start -o`

    def url(self, database: str = "postgres", host: str = "127.0.0.1") -> str:
        return f"postgresql://postgres@{host}:{self.port}/{database}"

    def pg_ctl(self, *args: str) -> None:
        """Run ``pg_ctl -D data -o OPTIONS ARGS`` as the server's user (``stop``, ``start``, ``restart``...)."""
        log = self.data.parent / "postgres.log"
        done = subprocess.run(
            _as_postgres_user([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", self.options, "-l", str(log),
                               *args]),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl {args} failed: {done.stdout}{done.stderr}")

    def create_database(self, name: str) -> str:
        """Create a fresh database and return its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _as_postgres_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", PG_USER, "--", *cmd]


@contextmanager
def postgres(listen: str = "127.0.0.1") -> Iterator[Postgres]:
    """initdb + pg_ctl start on a free port (as a non-root user); pg_ctl stop afterwards."""
    if not (PG_BIN / "initdb").exists():
        missing_tool(f"{PG_BIN}/initdb", "postgresql-15")
    root = Path(tempfile.mkdtemp(prefix="reviewserve-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        entry = pwd.getpwnam(PG_USER)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    port = free_port()
    subprocess.run(
        _as_postgres_user([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                           "--no-sync", "--locale=C"]),
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    options = f"-p {port} -k {root} -c listen_addresses={listen} -c fsync=off -c max_connections=50"
    log = root / "postgres.log"
    started = subprocess.run(
        _as_postgres_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start"]),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if started.returncode != 0:
        raise RuntimeError(f"pg_ctl start failed: {started.stdout}{started.stderr}\n{log.read_text()}")
    try:
        yield Postgres(port, data, options)
    finally:
        subprocess.run(
            _as_postgres_user([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]),
            capture_output=True, timeout=120,
        )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            requests.get(url, timeout=2)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


@contextmanager
def pushgateway(tmp: Path) -> Iterator[str]:
    """Debian's prometheus-pushgateway on a free port (no persistence); yields its URL."""
    if not Path(PUSHGATEWAY).exists():
        missing_tool("prometheus-pushgateway", "prometheus-pushgateway")
    port = free_port()
    with (tmp / "pushgateway.log").open("wb") as log:
        process = subprocess.Popen([PUSHGATEWAY, f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(url + "/-/ready", process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def moto_s3() -> Iterator[str]:
    """moto's S3-compatible server (PyPI moto[server], ThreadedMotoServer) on a free port; yields its URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
