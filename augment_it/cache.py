"""A persistent answer cache: a rerun with the same inputs pays for nothing twice.

SQLite in WAL mode: each answer is committed as it arrives, so a crash loses no paid answer,
and several processes on one machine can share the file. Beside the answers it holds the
requests in flight (`claim`): a process about to send a prompt another one is sending waits for
that answer instead of paying for it again.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from augment_it.providers.base import ModelReply

DEFAULT_CACHE_DIR = "~/.cache/augment-it"
# Seconds a claim holds unrenewed: a process that stopped renewing its claims (another host's, or a
# killed container's, whose process cannot be looked up from here) is taken for gone after that.
CLAIM_LEASE = 30.0


def default_cache_path() -> Path:
    root = os.environ.get("AUGMENT_CACHE_DIR") or DEFAULT_CACHE_DIR
    return Path(root).expanduser() / "answers.sqlite"


class AnswerCache:
    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, provider TEXT, model TEXT,"
            " text TEXT, input_tokens INTEGER, output_tokens INTEGER, created REAL)"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, host TEXT, pid INTEGER,"
                         " owner TEXT, claimed REAL)")
        self._owner = uuid.uuid4().hex  # this cache object's claims: a process may open the file twice
        # The prompt cache's share of the input (priced apart), kept so that a replayed answer's row
        # says what it cost; a cache file from an earlier release gains the columns, 0 for its rows.
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(answers)")}
        for column in ("cached_input_tokens", "cache_write_tokens"):
            if column not in columns:
                with contextlib.suppress(sqlite3.OperationalError):  # another process added it first
                    self._db.execute(f"ALTER TABLE answers ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")

    def get(self, key: str) -> ModelReply | None:
        row = self._db.execute(
            "SELECT text, input_tokens, output_tokens, cached_input_tokens, cache_write_tokens"
            " FROM answers WHERE key = ?", (key,)
        ).fetchone()
        return ModelReply(*row, cached=True) if row else None

    def put(self, key: str, provider: str, model: str, reply: ModelReply) -> None:
        """Keep REPLY as KEY's answer, and release this cache object's claim on KEY with it."""
        with self._transaction():  # one commit for both: a write per call is what a fast run spends
            self._db.execute(
                "INSERT OR REPLACE INTO answers (key, provider, model, text, input_tokens, output_tokens,"
                " created, cached_input_tokens, cache_write_tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, provider, model, reply.text, reply.input_tokens, reply.output_tokens, time.time(),
                 reply.cached_input_tokens, reply.cache_write_tokens),
            )
            self.release(key)

    def claim(self, key: str, lease: float = CLAIM_LEASE) -> bool:
        """Take KEY to send it, unless it is answered or someone else is sending it now. A claim
        lapses LEASE seconds after it was taken or last renewed, and at once when its process, on
        this host, is gone. `put` releases it, or else `release`."""
        now = time.time()
        with self._transaction():  # no other process between the reads and the write
            if self._db.execute("SELECT 1 FROM answers WHERE key = ?", (key,)).fetchone():
                return False
            held = self._db.execute("SELECT host, pid, owner, claimed FROM claims WHERE key = ?",
                                    (key,)).fetchone()
            if held is not None and not self._lapsed(*held, now=now, lease=lease):
                return False
            self._db.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?)",
                             (key, _HOST, os.getpid(), self._owner, now))
            return True

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            self._db.execute("COMMIT")

    def renew(self) -> None:
        """Renew this cache object's claims: its process is alive, and still sending those."""
        self._db.execute("UPDATE claims SET claimed = ? WHERE owner = ?", (time.time(), self._owner))

    def release(self, key: str) -> None:
        self._db.execute("DELETE FROM claims WHERE key = ? AND owner = ?", (key, self._owner))

    def _lapsed(self, host: str, pid: int, owner: str, claimed: float, now: float, lease: float) -> bool:
        if owner == self._owner or now - claimed > lease:
            return True
        return host == _HOST and not _alive(pid)

    def forget(self, key: str) -> None:
        self._db.execute("DELETE FROM answers WHERE key = ?", (key,))

    def close(self) -> None:
        self._db.close()


# A container's hostname is its own, so processes in other containers are told apart by it too.
_HOST = socket.gethostname()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it does, as another user's
        pass
    return True
