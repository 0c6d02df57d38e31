"""A persistent answer cache: a rerun with the same inputs pays for nothing twice.

SQLite in WAL mode: each answer is committed as it arrives, so a crash loses no paid answer,
and several processes on one machine can share the file.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path

from augment_it.providers.base import ModelReply

DEFAULT_CACHE_DIR = "~/.cache/augment-it"


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
        self._db.execute(
            "INSERT OR REPLACE INTO answers (key, provider, model, text, input_tokens, output_tokens,"
            " created, cached_input_tokens, cache_write_tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key, provider, model, reply.text, reply.input_tokens, reply.output_tokens, time.time(),
             reply.cached_input_tokens, reply.cache_write_tokens),
        )

    def forget(self, key: str) -> None:
        self._db.execute("DELETE FROM answers WHERE key = ?", (key,))

    def close(self) -> None:
        self._db.close()
