"""The `augment` command's entry point: hands the command to a warm process when one runs for
this installation (`augment daemon`, cli/daemon.py), and runs it here otherwise.

Only the standard library is imported until then: handing a command over costs a few tens of
milliseconds, where importing Prefect, GX and the SDKs costs seconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import sys
from typing import Any

SOCKET_ENV = "AUGMENT_DAEMON_SOCKET"
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def socket_path() -> str:
    """Where the warm process of this installation (its interpreter and its code) listens."""
    if explicit := os.environ.get(SOCKET_ENV):
        return explicit
    installation = f"{sys.prefix}\0{os.path.dirname(os.path.abspath(__file__))}"
    digest = hashlib.sha256(installation.encode()).hexdigest()[:16]
    return os.path.join(os.path.expanduser("~"), ".cache", "augment", f"daemon-{digest}.sock")


def main() -> None:
    args = sys.argv[1:]
    if args[:1] != ["daemon"] and (code := run_warm(args)) is not None:
        sys.exit(code)
    from augment_it.cli.main import app

    app(prog_name="augment")


def run_warm(args: list[str]) -> int | None:
    """Run the command in the warm process; None when there is none to run it (or it refused)."""
    conn = connect(socket_path())
    if conn is None:
        return None
    umask = os.umask(0)
    os.umask(umask)
    with conn:
        try:
            # The run's stdin, stdout and stderr are this command's own: its terminal, pipes or files.
            send_request(conn, {"argv": args, "cwd": os.getcwd(), "env": dict(os.environ),
                                "path": sys.path, "umask": umask}, [0, 1, 2])
        except OSError:  # a stream closed (`<&-`): nothing to pass on, the command runs here
            return None
        replies = conn.makefile("rb")
        first = _reply(replies)
        if first is None or "refused" in first:
            if first is not None:
                print(f"augment: {first['refused']}; running without it", file=sys.stderr)
            return None
        child = first["pid"]
        # The run is the warm process's child, not in this terminal's process group: what would
        # have stopped this command is passed on to it.
        for signum in FORWARDED_SIGNALS:
            signal.signal(signum, lambda signum, frame: _forward(child, signum))
        last = _reply(replies)
    if last is None:
        print(f"augment: the warm process's run (pid {child}) ended without an exit code",
              file=sys.stderr)
        return 1
    return int(last["exit"])


def connect(path: str) -> socket.socket | None:
    """A connection to the warm process listening on PATH; None when none listens there (no
    socket, or one a killed warm process left behind)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        return None
    return conn


def send_request(conn: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
    body = json.dumps(request).encode()
    socket.send_fds(conn, [len(body).to_bytes(8, "big") + body], fds)


def _forward(child: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it has just ended: its exit code is on its way
        os.kill(child, signum)


def _reply(replies: Any) -> dict[str, Any] | None:
    line = replies.readline()
    return json.loads(line) if line else None


if __name__ == "__main__":
    main()
