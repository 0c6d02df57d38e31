"""`python -m augment_it.cli.server_process PARENT_PID UVICORN_ARGS...`: Prefect's server for one
command, which ends when that command does, however it ends.

The server runs in a session of its own (see local_server), so neither a Ctrl-C nor a closed
terminal reaches it, and a command killed with SIGKILL (or by the OOM killer) cannot stop it.
It watches for its parent instead, and stops as uvicorn does on SIGTERM once the parent is gone,
removing its log (LOG_ENV) as the command would have.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time

LOG_ENV = "AUGMENT_SERVER_LOG"


def stop_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    with contextlib.suppress(KeyError, OSError):
        os.unlink(os.environ[LOG_ENV])  # still written to until the server exits, then freed
    os.kill(os.getpid(), signal.SIGTERM)


if __name__ == "__main__":
    threading.Thread(target=stop_when_orphaned, args=(int(sys.argv[1]),), daemon=True).start()
    from uvicorn.main import main

    main(sys.argv[2:])
