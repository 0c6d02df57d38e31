"""Connection settings for the services records come from and go back to, and how they are found.

Each store's settings are a pydantic model with secrets as `SecretStr`. They come, in this order,
from a named settings object (a Prefect block, named by `?block=NAME` in the URI; the loader is
registered by `blocks.connectors` so this package never imports Prefect) or from environment
variables. A missing setting fails with a message that names both ways to give it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import BaseModel, ValidationError

from augment_it.errors import UserInputError
from augment_it.records import SOURCE, STORE_KEY, is_missing


class ConnectionSettings(BaseModel):
    """Base for a store's settings; subclasses name their environment variables and block."""

    ENV: ClassVar[dict[str, str]] = {}  # field name -> environment variable
    BLOCK: ClassVar[str] = ""  # the Prefect block type that holds the same settings
    SERVICE: ClassVar[str] = ""

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ConnectionSettings:
        environ = os.environ if environ is None else environ
        values = {name: environ[var] for name, var in cls.ENV.items() if environ.get(var)}
        return cls._build(values, "environment")

    @classmethod
    def _build(cls, values: dict[str, Any], origin: str) -> ConnectionSettings:
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            # Only field names go into the message: pydantic's own text would echo input values.
            problems = sorted({str(err["loc"][0]) for err in exc.errors() if err["loc"]})
            hints = ", ".join(f"{name} ({cls.ENV[name]})" if name in cls.ENV else name
                              for name in problems)
            raise UserInputError(
                f"{cls.SERVICE} settings from the {origin} are missing or invalid: {hints}. Set the "
                f"environment variables, or save a {cls.BLOCK} block and add ?block=NAME to the URI"
            ) from None


S = TypeVar("S", bound=ConnectionSettings)
SettingsLoader = Callable[[type[ConnectionSettings], str], ConnectionSettings]
_loader: list[SettingsLoader] = []


def register_settings_loader(loader: SettingsLoader) -> None:
    """Let `?block=NAME` resolve through `loader` (blocks.connectors registers Prefect blocks)."""
    _loader[:] = [loader]


def load_settings(cls: type[S], block: str | None) -> S:
    """Settings for one store: from the named block if the URI names one, else the environment."""
    if block:
        if not _loader:
            raise UserInputError(f"?block={block} needs Prefect blocks: run through the augment flows, "
                                 f"or set {', '.join(cls.ENV.values())} instead")
        settings = _loader[0](cls, block)
        if not isinstance(settings, cls):
            raise UserInputError(f"block {block!r} does not hold {cls.SERVICE} settings")
        return settings
    return cls.from_env()  # type: ignore[return-value]


@dataclass(frozen=True)
class StoreURI:
    """`scheme://netloc/path?query` split the way every connector reads it."""

    scheme: str
    netloc: str
    path: str
    query: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, uri: str) -> StoreURI:
        parts = urlsplit(uri)
        return cls(parts.scheme, unquote(parts.netloc), unquote(parts.path),
                   parse_qs(parts.query, keep_blank_values=True))

    def one(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def many(self, name: str) -> list[str]:
        """A list option, given repeated (`f=a&f=b`) or comma-separated (`f=a,b`)."""
        values = self.query.get(name, [])
        return [item.strip() for value in values for item in value.split(",") if item.strip()]

    @property
    def segments(self) -> list[str]:
        return [s for s in [self.netloc, *self.path.split("/")] if s]


class Pacer:
    """Spaces calls at least `interval` seconds apart, across threads (one per rate-limited scope)."""

    def __init__(self, per_second: float) -> None:
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self._lock = threading.Lock()
        self._next = 0.0

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


_pacers: dict[str, Pacer] = {}
_pacers_lock = threading.Lock()


def pacer_for(scope: str, per_second: float) -> Pacer:
    """One pacer per scope (e.g. per Airtable base) shared by every source and sink in the process."""
    with _pacers_lock:
        pacer = _pacers.get(scope)
        if pacer is None or abs(pacer.interval - (1.0 / per_second if per_second > 0 else 0.0)) > 1e-9:
            pacer = _pacers[scope] = Pacer(per_second)
        return pacer


def read_from(record: Mapping[str, Any], location: str) -> bool:
    """Whether the record was read from `location`, the part of its SOURCE before `#KEY`.

    Sources name a record `SCHEME:TABLE#KEY` (e.g. `nocodb:m1a2b3#5`, `airtable:appX/Companies#recY`);
    a sink passes its own `SCHEME:TABLE` spelled the same way.
    """
    source = record.get(SOURCE)
    return isinstance(source, str) and source.startswith(f"{location}#")


def store_key_for(record: Mapping[str, Any], location: str) -> Any:
    """The record's STORE_KEY if it was read from `location`, else None.

    A key read from another store or table names an unrelated row here (NocoDB and Databricks keys
    are per table), so a sink writes such a record as a new one instead of onto that row.
    """
    key = record.get(STORE_KEY)
    if is_missing(key) or not read_from(record, location):
        return None
    return key
