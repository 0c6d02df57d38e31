"""The Prefect server a benchmark runs on: the test harness's SQLite one, or PostgreSQL.

The project deploys Prefect on PostgreSQL (docker-compose.yml). On SQLite, creating a flow run
sometimes fails with "database is locked" (the server's read-then-insert transaction meets the
task-run recorder's writes), the server answers 503 and Prefect's client waits a fixed 2 s, so
whole-run timings there carry 0-2 such waits. `--server postgres` starts a private PostgreSQL
cluster from the machine's own binaries, and a Prefect server on it, for the bench's lifetime.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

ServerKind = Literal["sqlite", "postgres"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def add_server_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", choices=["sqlite", "postgres"], default="sqlite",
                        help="the Prefect server's database; postgres starts a private cluster")


@contextmanager
def prefect_server(kind: ServerKind) -> Iterator[None]:
    """Point this process's Prefect settings at a fresh server of KIND while the block runs."""
    if kind == "sqlite":
        from prefect.testing.utilities import prefect_test_harness

        with prefect_test_harness(server_startup_timeout=60):
            yield
        return
    with postgres_cluster() as database_url, prefect_server_process(database_url):
        yield


def _postgres_binary(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)
    if not found:
        raise SystemExit(f"--server postgres needs PostgreSQL's {name} (Debian: apt install postgresql)")
    return found


@contextmanager
def postgres_cluster() -> Iterator[str]:
    """A throwaway cluster on a free loopback port; yields its SQLAlchemy URL for Prefect."""
    home = Path(tempfile.mkdtemp(prefix="augment-bench-pg-"))
    data, port = home / "data", free_port()
    # initdb and postgres refuse to run as root; the Debian package's user owns the cluster.
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_owner:
        shutil.chown(home, "postgres")
    pg_ctl = [*as_owner, _postgres_binary("pg_ctl"), "-D", str(data)]
    subprocess.run([*as_owner, _postgres_binary("initdb"), "-D", str(data), "-A", "trust", "-U", "prefect"],
                   check=True, capture_output=True)
    subprocess.run([*pg_ctl, "-w", "-l", str(home / "log"), "-o",
                    f"-p {port} -k {home} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)
    try:
        subprocess.run([*as_owner, _postgres_binary("createdb"), "-h", "127.0.0.1", "-p", str(port),
                        "-U", "prefect", "prefect"], check=True, capture_output=True)
        yield f"postgresql+asyncpg://prefect@127.0.0.1:{port}/prefect"
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


@contextmanager
def prefect_server_process(database_url: str) -> Iterator[None]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    port, home = free_port(), tempfile.mkdtemp(prefix="augment-bench-prefect-")
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    env.update({"PREFECT_HOME": home, "PREFECT_API_DATABASE_CONNECTION_URL": database_url,
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    url, log_path = f"http://127.0.0.1:{port}/api", Path(home) / "server.log"
    try:
        with log_path.open("w") as log:
            server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host",
                                       "127.0.0.1", "--port", str(port)],
                                      env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                _wait_healthy(url, server, log_path)
                with temporary_settings({PREFECT_API_URL: url}):
                    yield
            finally:
                server.terminate()
                server.wait(30)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _wait_healthy(url: str, server: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the Prefect server exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.25)
    raise RuntimeError(f"the Prefect server was not healthy within {timeout:.0f} s")
