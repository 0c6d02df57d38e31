"""One pipeline run at a time in a run directory.

Two runs into one OUT (a schedule that fires while yesterday's run still waits for review, a
command started twice) overwrite each other's stage files, and the review decision of one is
applied to the records of the other. The pipeline holds `OUT/.augment/lock.json` while it runs:
who holds it (the flow run, host and process) and when it was last seen, rewritten every
HEARTBEAT_SECONDS by a thread. Another run refuses to start while that holder is alive: on the
same host, while its process exists; from another host (a container), until it has not been seen
for STALE_SECONDS, since a killed run cannot remove its lock.

The lock is a file on the run directory's own storage (any fsspec URL). On a local file system
(a bind-mounted volume included) runs claim it in turns, under the operating system's lock on a
file beside it; on other storage (object stores) a claim is written whole and read back after
SETTLE_SECONDS, so of two runs starting together the one whose claim was overwritten sees it and
stops.

A run whose command was killed may go on for a while in a warm process (cli/daemon.py), keeping the
answers it had sent for; it marks its lock `finishing`, and a run that would start waits for it
(up to FINISHING_WAIT_SECONDS) instead of refusing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from fsspec.implementations.local import LocalFileSystem

from augment_it.errors import UserInputError
from augment_it.layout import RunLayout, filesystem, read_json, remove, write_json

HEARTBEAT_SECONDS = 15.0
STALE_SECONDS = 60.0
SETTLE_SECONDS = 0.1
FINISHING_WAIT_SECONDS = 300.0


class RunDirInUse(UserInputError):
    """Another run, still alive, holds the run directory."""


@contextmanager
def holding_run_dir(out: str, owner: str) -> Iterator[dict[str, Any] | None]:
    """Hold OUT for the run OWNER (a flow run id) for the duration of the block; gives the lock
    of a run that was killed in OUT, if this one replaced it."""
    lock = RunDirLock(out, owner)
    replaced = lock.acquire()
    try:
        yield replaced
    finally:
        lock.release()


def abandon_held() -> None:
    """Mark the run directories this process holds as finishing: its command is gone, and it only
    keeps what it had sent for before it ends."""
    for lock in list(_HELD):
        lock.finishing = True
        with contextlib.suppress(OSError):
            lock._write()


def check_free(out: str) -> None:
    """Raise RunDirInUse when a run holds OUT: a command says so before it starts anything."""
    RunDirLock(out, owner="").check()


class RunDirLock:
    def __init__(self, out: str, owner: str) -> None:
        self.out, self.owner = out, owner
        self.url = RunLayout(out).lock
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._started = datetime.now(UTC).isoformat(timespec="seconds")
        self.finishing = False

    def check(self) -> dict[str, Any] | None:
        """Raise RunDirInUse when another run that may still be running holds the directory; else
        return the lock that another run, now gone, left there (None if there is none)."""
        holder = self._holder()
        deadline = time.monotonic() + FINISHING_WAIT_SECONDS
        while (holder is not None and holder.get("finishing") and alive(holder)
               and time.monotonic() < deadline):
            time.sleep(0.1)
            holder = self._holder()
        if holder is None or holder.get("owner") == self.owner:
            return None
        if alive(holder):
            raise self._in_use(holder)
        return holder

    def acquire(self) -> dict[str, Any] | None:
        """Hold the directory; return the lock of a run that is gone, if this replaced one."""
        with claims_in_turn(self.url) as in_turn:
            replaced = self.check()
            self._write()
        if not in_turn:
            time.sleep(SETTLE_SECONDS)
        holder = self._holder()
        if holder is None or holder.get("owner") != self.owner:  # another run claimed it at once
            raise self._in_use(holder or {})
        self._beat = threading.Thread(target=self._heartbeat, name="run-dir-lock", daemon=True)
        self._beat.start()
        _HELD.add(self)
        return replaced

    def release(self) -> None:
        _HELD.discard(self)
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        holder = self._holder()
        if holder is not None and holder.get("owner") == self.owner:
            remove(self.url)

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            with contextlib.suppress(OSError):  # storage briefly unavailable: the next beat tries again
                holder = self._holder()
                if holder is not None and holder.get("owner") != self.owner:
                    return  # another run took over, having found this one gone: never take it back
                self._write()

    def _write(self) -> None:
        write_json({"owner": self.owner, "host": socket.gethostname(), "pid": os.getpid(),
                    "started": self._started, "seen": time.time(), "finishing": self.finishing}, self.url)

    def _holder(self) -> dict[str, Any] | None:
        try:
            holder = read_json(self.url)
        except (OSError, ValueError):  # none, or not a lock we wrote: nothing holds the directory
            return None
        return holder if isinstance(holder, dict) else None

    def _in_use(self, holder: dict[str, Any]) -> RunDirInUse:
        who = (f"flow run {holder.get('owner')}, process {holder.get('pid')} on {holder.get('host')}, "
               f"started {holder.get('started')}")
        return RunDirInUse(
            f"--out {self.out} is in use by another run ({who}): wait for it to end (a run waiting for "
            "review ends once reviewed, see `augment review list`), or choose another --out. A run "
            f"that was killed frees it at once on its own host, elsewhere {STALE_SECONDS:g} s after it "
            "was last seen")


_HELD: set[RunDirLock] = set()  # by this process


@contextmanager
def claims_in_turn(url: str) -> Iterator[bool]:
    """While the block runs, no other run claims the lock at URL, when it is on a local file
    system; yields whether that holds (elsewhere claims settle instead)."""
    fs, path = filesystem(url)
    if not isinstance(fs, LocalFileSystem):
        yield False
        return
    guard = f"{path}.claim"
    fs.makedirs(os.path.dirname(guard), exist_ok=True)
    with open(guard, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released on close, by the kernel if the process dies
        yield True


def alive(holder: dict[str, Any]) -> bool:
    """Whether the run that wrote HOLDER may still be running."""
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        return process_exists(holder["pid"])
    seen = holder.get("seen")
    return isinstance(seen, int | float) and time.time() - seen < STALE_SECONDS


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process, alive
        return True
    return True
