"""The Prefect server `augment run` starts for itself when PREFECT_API_URL names none.

Prefect would start a temporary server of its own, but that one serves no UI (so the review
form could not be opened), and it sits in the terminal's process group: the Ctrl-C meant for
the command stopped the server first, and the run then spent a minute failing to report its
end to it. This one serves the UI and runs in a session of its own. The command stops it when
it ends; a command killed outright leaves it to stop itself (server_process).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

from augment_it.cli.terminal import console
from augment_it.errors import UserInputError
from flows.review import TEMPORARY_API_ENV

STARTUP_SECONDS = 60.0
PORT_TAKEN = 3  # uvicorn's exit code when another process took the port first


@contextmanager
def prefect_api() -> Iterator[str]:
    """The API the command's flows report to: PREFECT_API_URL, or a temporary server's."""
    if PREFECT_API_URL.value():
        yield str(PREFECT_API_URL.value())
        return
    process, url = _start()
    console.print(f"[dim]Prefect UI of this run: {url.removesuffix('/api')} (a temporary server, stopped "
                  "when the command ends; set PREFECT_API_URL to keep runs)[/dim]", highlight=False)
    os.environ[TEMPORARY_API_ENV] = url
    try:
        with temporary_settings({PREFECT_API_URL: url}):
            yield url
    finally:
        os.environ.pop(TEMPORARY_API_ENV, None)
        _send_what_is_queued()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _send_what_is_queued() -> None:
    """Let Prefect's background workers send the run's last logs and events (its end, after a
    Ctrl-C) while the server still listens; they would fail at exit, noisily, if it did not."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):  # best effort: the run's outcome is already decided
            worker.drain_all(timeout=5)


def _start() -> tuple[subprocess.Popen[bytes], str]:
    for _ in range(3):
        port = _free_port()
        url = f"http://127.0.0.1:{port}/api"
        process = subprocess.Popen(
            [sys.executable, "-m", "augment_it.cli.server_process", str(os.getpid()),
             "--factory", "prefect.server.api.server:create_app",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"],
            env={"PREFECT_SERVER_ANALYTICS_ENABLED": "false", **os.environ,
                 **get_current_settings().to_environment_variables(exclude_unset=True),
                 "PREFECT_UI_ENABLED": "true", "PREFECT_UI_API_URL": url},
            start_new_session=True,  # out of the terminal's process group: Ctrl-C reaches the command only
        )
        if _healthy(process, url):
            return process, url
        if process.returncode != PORT_TAKEN:
            process.kill()
            process.wait()
            raise UserInputError(f"the temporary Prefect server did not start within {STARTUP_SECONDS:g} s "
                                 f"(exit code {process.returncode}); set PREFECT_API_URL to a running server")
    raise UserInputError("no free port for a temporary Prefect server; set PREFECT_API_URL")


def _healthy(process: subprocess.Popen[bytes], url: str) -> bool:
    deadline = time.monotonic() + STARTUP_SECONDS
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if client.get(f"{url}/health").status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    return False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
