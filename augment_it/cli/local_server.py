"""The Prefect server `augment run` starts for itself when PREFECT_API_URL names none.

Prefect would start a temporary server of its own, but that one serves no UI (so the review
form could not be opened), and it sits in the terminal's process group: the Ctrl-C meant for
the command stopped the server first, and the run then spent a minute failing to report its
end to it. This one serves the UI and runs in a session of its own. The command stops it when
it ends; a command killed outright leaves it to stop itself (server_process).

The server writes to a log file of its own, not to the terminal: stopping it mid-flush makes
Prefect log a traceback it recovers from, which printed a wall of text after a good run. The log
is removed when the server stops cleanly or outlives its command, and named when it does not start.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

from augment_it.cli.server_process import LOG_ENV
from augment_it.cli.terminal import console
from augment_it.errors import UserInputError
from flows.review import TEMPORARY_API_ENV

STARTUP_SECONDS = 60.0
# The project's prefect.toml (see there why) for a server started from any directory; a value the
# user set in the environment or a prefect.toml of their own wins.
SERVER_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "1000",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "1",
}
# uvicorn stops gracefully on SIGTERM, then dies of it as the signal's default would.
STOPPED_CLEANLY = {0, -signal.SIGTERM}
EXCEPTION_LINE = re.compile(r"[A-Za-z_][\w.]*(Error|Exception): ")


@contextmanager
def prefect_api(while_starting: Callable[[], object] = lambda: None) -> Iterator[str]:
    """The API the command's flows report to: PREFECT_API_URL, or a temporary server's.

    WHILE_STARTING is work the command does while a temporary server starts on another core."""
    if PREFECT_API_URL.value():
        yield str(PREFECT_API_URL.value())
        return
    process, url, log = _start(while_starting)
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
        if process.returncode in STOPPED_CLEANLY:
            log.unlink(missing_ok=True)


def _send_what_is_queued() -> None:
    """Let Prefect's background workers send the run's last logs and events (its end, after a
    Ctrl-C) while the server still listens; they would fail at exit, noisily, if it did not."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):  # best effort: the run's outcome is already decided
            worker.drain_all(timeout=5)


def _start(while_starting: Callable[[], object]) -> tuple[subprocess.Popen[bytes], str, Path]:
    home = Path(get_current_settings().home)
    home.mkdir(parents=True, exist_ok=True)
    log = home / f"augment-server-{os.getpid()}.log"
    # The command binds the port and hands the socket over (uvicorn --fd): no other process can take
    # the port between choosing and binding it.
    with socket.socket() as listener, log.open("wb") as output:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/api"
        process = subprocess.Popen(
            [sys.executable, "-m", "augment_it.cli.server_process", str(os.getpid()),
             "--factory", "prefect.server.api.server:create_app", "--fd", str(listener.fileno()),
             "--log-level", "error", "--lifespan", "on"],
            env={**SERVER_DEFAULTS, **os.environ,
                 **get_current_settings().to_environment_variables(exclude_unset=True),
                 "PREFECT_UI_ENABLED": "true", "PREFECT_UI_API_URL": url, LOG_ENV: str(log)},
            pass_fds=(listener.fileno(),), stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,  # out of the terminal's process group: Ctrl-C reaches the command only
        )
    while_starting()
    if not _healthy(process, url):
        exited = process.poll()
        process.kill()
        process.wait()
        why = (f"exited with code {exited}" if exited is not None
               else f"did not answer within {STARTUP_SECONDS:g} s")
        raise UserInputError(f"the temporary Prefect server {why}{_last_error(log)}; its log: {log}. "
                             "Set PREFECT_API_URL to a running server")
    return process, url, log


def _last_error(log: Path) -> str:
    """The exception a failed start ended with (`OperationalError: unable to open database file`)."""
    errors = [line for line in log.read_text(errors="replace").splitlines() if EXCEPTION_LINE.match(line)]
    return f": {errors[-1]}" if errors else ""


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
