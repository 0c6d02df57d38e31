"""`augment daemon`: a warm process that runs `augment` commands with their libraries imported.

Importing Prefect, Great Expectations and a provider's SDK costs a command 4-6 s of CPU before
it does anything (the README's figures). This process imports them once and forks a child per
command. The child takes the command's arguments, working directory, environment and terminal
(its stdin, stdout and stderr, passed over a Unix socket), runs the command as it would have
run itself, and reports its exit code. `augment` (launcher.py) hands every command to the warm
process of its installation when one runs.

A child outlives its command. When the command is killed, kill -9 included, the child sends no
new request but reads the answers already on their way, which are paid for, into the answer
cache; then it stops as on SIGTERM. A rerun pays only for prompts never sent.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import json
import logging
import os
import pkgutil
import shlex
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from augment_it.calling import SENDING
from augment_it.cli.launcher import connect, send_request, socket_path
from augment_it.cli.terminal import console, fail, reopen_console
from augment_it.run_lock import FINISHING_WAIT_SECONDS, abandon_held

MAX_REQUEST_BYTES = 16 * 2**20


def daemon(stop: Annotated[bool, typer.Option("--stop", help="Stop the warm process")] = False) -> None:
    """Keep a warm process that runs augment commands with Prefect, GX and the SDKs imported.

    Commands then start in a fraction of a second instead of seconds. It serves the commands of
    this installation, stops on Ctrl-C or --stop, and when a module it imported changes on disk
    (the command that finds out runs on its own)."""
    path = socket_path()
    if stop:
        if not _stop(path):
            fail(f"no warm process listens on {path}")
        console.print(f"stopped the warm process on {path}")
        return
    if _listening(path):
        fail(f"a warm process already listens on {path} (augment daemon --stop)")
    loaded_from = time.time()
    preload()
    serve(path, Imported(_module_files(), loaded_from, settings_sources()))


@dataclass(frozen=True)
class Imported:
    """What the warm process imported, when, and what Prefect read its settings from then."""

    modules: list[str]
    loaded_from: float
    settings_sources: tuple[object, ...]

    def changed_module(self) -> str | None:
        """The first module changed (or removed) since: its code in memory is not the code a
        command would run."""
        for path in self.modules:
            try:
                if os.stat(path).st_mtime > self.loaded_from:
                    return path
            except OSError:
                return path
        return None


# What the libraries import only on first use, which every command would pay for again (0.3 s
# of a warm `augment run`): Prefect's run engines and the parameter encoder of a flow run's
# creation, pandas' Parquet and Arrow backends, anyio's event loop backend.
IMPORTED_ON_FIRST_USE = ("prefect.flow_engine", "prefect.task_engine", "prefect.utilities.visualization",
                         "fastapi.encoders", "pyarrow.parquet", "pyarrow.dataset",
                         "pandas.core.methods.to_dict", "anyio._backends._asyncio")


def preload() -> None:
    """Import what the commands import on their way (flows, tasks, GX, every SDK, every file
    format's reader) and load the language model before any fork."""
    import augment_it.sources.files as file_formats
    from augment_it.cli.local_server import prefect_api  # noqa: F401
    from augment_it.enrichers import load_language_model
    from augment_it.providers import PROVIDERS
    from augment_it.validation import import_great_expectations
    from flows.pipeline import augment_pipeline  # noqa: F401
    from flows.preflight import preflight  # noqa: F401
    from tasks.review import cancel_abandoned_review  # noqa: F401

    import_great_expectations()
    readers = pkgutil.iter_modules(file_formats.__path__, f"{file_formats.__name__}.")
    modules = [*IMPORTED_ON_FIRST_USE, *(spec.module for spec in PROVIDERS.values()),
               *(reader.name for reader in readers)]
    for name in modules:
        importlib.import_module(name)
    load_language_model().result()  # a second of CPU each run spent beside its model calls
    # A fork copies only the thread that forks: one still importing would leave its locks held.
    for thread in threading.enumerate():
        if thread is not threading.main_thread():
            thread.join()
    # Out of the collector's reach: a child's collections would otherwise touch every object
    # imported here, copying the pages the fork shares with this process.
    gc.freeze()


def serve(path: str, imported: Imported) -> None:
    Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a killed warm process's; a live one was refused above
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    umask = os.umask(0o177)  # the socket runs commands as this user: for this user only
    try:
        listener.bind(path)
    finally:
        os.umask(umask)
    listener.listen(64)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children report to their command; the kernel reaps them
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as on Ctrl-C
    console.print(f"warm process {os.getpid()} on {path}: augment commands of this installation run "
                  "here. Ctrl-C or `augment daemon --stop` stops it")
    server = os.getpid()
    try:
        while True:
            conn, _ = listener.accept()
            with contextlib.ExitStack() as received:
                received.callback(conn.close)
                try:
                    request, fds = _receive(conn)
                except (OSError, ValueError):  # not a command (a probe whether it listens)
                    continue
                for fd in fds:
                    received.callback(os.close, fd)
                if request.get("stop"):
                    _send(conn, {"stopped": os.getpid()})
                    return
                if (changed := imported.changed_module()) is not None:
                    _send(conn, {"refused": f"the warm process stopped: {changed} changed since it "
                                            "imported it"})
                    console.print(f"stopped: {changed} changed since it was imported")
                    return
                if (child := os.fork()) == 0:
                    received.pop_all()
                    listener.close()
                    run_forked(conn, request, fds, imported)  # exits the child's interpreter
                console.print(f"pid {child}: {shlex.join(['augment', *request['argv']])} (in "
                              f"{request['cwd']})", markup=False, highlight=False)
    except KeyboardInterrupt:
        pass
    finally:
        if os.getpid() == server:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def run_forked(conn: socket.socket, request: dict[str, Any], fds: list[int], imported: Imported) -> None:
    """Be the command: its session, terminal, directory, environment and arguments; then exit
    as it would have, reporting the code."""
    os.setsid()  # a Ctrl-C in the warm process's terminal is not this command's
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the command waits for its own children
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in enumerate(fds):
        if fd != target:
            os.dup2(fd, target)
            os.close(fd)
    adopt(request, imported.settings_sources)
    exit_code = [1]  # until the command says otherwise: it may end in a traceback
    finished = threading.Event()

    def report() -> None:  # at the interpreter's exit, after Prefect's own exit handlers
        finished.set()
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        with contextlib.suppress(OSError):
            _send(conn, {"exit": exit_code[0]})
        # Freeing the objects inherited from the warm process would write to each of their pages
        # (copies, here) for half a second, while a pipe the command wrote to stays open.
        os._exit(exit_code[0])

    atexit.register(report)
    _send(conn, {"pid": os.getpid()})
    threading.Thread(target=finish_when_abandoned, args=(conn, finished), daemon=True).start()
    from augment_it.cli.main import app

    try:
        app(args=request["argv"], prog_name="augment")
    except SystemExit as exc:
        exit_code[0] = _exit_code(exc)
        raise SystemExit(exit_code[0]) from None


def adopt(request: dict[str, Any], imported_settings_sources: tuple[object, ...]) -> None:
    """Take the command's working directory, umask, environment, import path and streams, and read
    Prefect's settings (the environment, the profile, a prefect.toml) as the command would have,
    unless they are read from what the warm process read them from (0.15 s saved)."""
    from prefect.context import refresh_global_settings_context
    from prefect.logging.configuration import setup_logging

    os.chdir(request["cwd"])
    os.umask(request["umask"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = ["augment", *request["argv"]]
    sys.path[:] = request["path"]  # PYTHONPATH, or modules beside a script
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=stream.isatty())  # type: ignore[attr-defined]
    if settings_sources() != imported_settings_sources:
        refresh_global_settings_context()
        setup_logging(incremental=False)  # handlers that look at this terminal, levels from these settings
    reopen_console()


def settings_sources() -> tuple[object, ...]:
    """What Prefect's settings and log handlers are made from: the directory with its
    prefect.toml, pyproject.toml and .env, the PREFECT_ variables, the profiles file, and whether
    stderr is a terminal."""
    from prefect.settings import get_current_settings

    files = [Path(name) for name in ("prefect.toml", "pyproject.toml", ".env")]
    files.append(Path(get_current_settings().profiles_path))
    return (os.getcwd(), sorted((k, v) for k, v in os.environ.items() if k.startswith("PREFECT_")),
            sys.stderr.isatty(), [_mtime(path) for path in files])


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def finish_when_abandoned(conn: socket.socket, finished: threading.Event) -> None:
    """Once the command is gone without its exit code (killed), send nothing more, keep the
    answers already sent for, and stop as the command would have on SIGTERM."""
    with contextlib.suppress(OSError):
        while conn.recv(1):
            pass
    if finished.is_set():
        return
    abandon_held()
    # As long as a rerun into its --out waits for it; each call also has its own timeout (60 s).
    SENDING.close(FINISHING_WAIT_SECONDS)
    os.kill(os.getpid(), signal.SIGTERM)


def _exit_code(exc: SystemExit) -> int:
    """The code the interpreter would exit with (it prints a message given instead)."""
    if exc.code is None or isinstance(exc.code, int):
        return exc.code or 0
    print(exc.code, file=sys.stderr)
    return 1


def _module_files() -> list[str]:
    return [path for module in list(sys.modules.values())
            if isinstance(path := getattr(module, "__file__", None), str)]


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
    try:
        while len(data) < 8 or len(data) < 8 + int.from_bytes(data[:8], "big"):
            if not (more := conn.recv(1 << 16)) or len(data) > MAX_REQUEST_BYTES:
                raise ConnectionError("the command's request ended early")
            data += more
        return json.loads(data[8:]), fds
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def _send(conn: socket.socket, message: dict[str, Any]) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


def _listening(path: str) -> bool:
    if (probe := connect(path)) is None:
        return False
    probe.close()
    return True


def _stop(path: str) -> bool:
    if (conn := connect(path)) is None:
        return False
    with conn:
        try:
            send_request(conn, {"stop": True}, [])
            return bool(conn.makefile("rb").readline())
        except OSError:
            return False
