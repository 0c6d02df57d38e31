"""Sinks: where approved records go back to, chosen by URI scheme like sources.

A sink's `write(records)` writes each record's augmented fields onto the store and returns counts:
`updated`, `created`, `failed` (records the store refused) and the first `errors`. A store that
cannot be reached or refuses the credentials raises a UserInputError instead: nothing was written.
A store that stops answering mid-write stops it; the records not written are counted as failed.
An update never sends a missing value (None, NaN): it would clear what the store holds now.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, TypeVar

import pandas as pd

from augment_it.errors import UserInputError
from augment_it.records import as_text, plain

MAX_ERRORS_KEPT = 20
R = TypeVar("R")


@dataclass
class SinkCounts:
    store: str
    target: str
    updated: int = 0
    created: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def fail(self, count: int, reason: str) -> None:
        self.failed += count
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(reason)

    @property
    def written(self) -> int:
        return self.updated + self.created

    @property
    def counted(self) -> int:
        return self.updated + self.created + self.failed

    def stop_unanswered(self, error: UserInputError, unsent: int, which: str) -> None:
        """The store gave no answer after the retries: the caller stops writing, since every later
        request would wait them out again. With nothing written yet the store cannot be used at all
        and `error` is raised; else the `unsent` records are counted as failed, keeping the counts."""
        if not self.written:
            raise error
        self.fail(unsent, f"{which}: not written, {error}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def send_in_turn(sends: Sequence[tuple[int, Callable[[], None]]], counts: SinkCounts,
                 unanswered: type[UserInputError], noun: str) -> None:
    """Make (records, send) pairs in turn, each send counting its records, until one gets no answer
    (raises `unanswered`): then stop, counting every record not counted yet as not written."""
    total = sum(size for size, _ in sends)
    counted_before = counts.counted
    for _, send in sends:
        try:
            send()
        except unanswered as exc:
            unsent = total - (counts.counted - counted_before)
            counts.stop_unanswered(exc, unsent, f"{unsent} {noun}")
            return


def in_batches(rows: list[R], size: int) -> list[list[R]]:
    return [rows[start:start + size] for start in range(0, len(rows), size)]


def field_value(value: Any, takes_lists: bool = False) -> Any:
    """A record's value as a store's field takes it: JSON-able, and a list or mapping as its JSON
    text unless the sink knows the field `takes_lists` (a multi-select): every other type refuses an
    array or object, and text fits the text column an answer usually goes to."""
    value = plain(value, strict_json=True)
    if isinstance(value, list) and takes_lists:
        return value
    return as_text(value) if isinstance(value, list | dict) else value


def present_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """The values to send to an existing record: a missing one (None, as `plain` makes of NaN) is
    left out, since sending null would clear what the store holds now, e.g. a value a teammate typed
    in while the run waited for review. A real value ("", 0, false) is kept."""
    return {name: value for name, value in values.items() if value is not None}


class Sink(Protocol):
    def check(self) -> None:
        """Raise a UserInputError, before any answer is paid for, when the table plainly lacks a
        field to write (as far as the store lets the sink read its fields)."""

    def write(self, records: pd.DataFrame) -> dict[str, Any]: ...


# A factory gets the destination URI, the fields to write when the URI names none (`?fields=`), and
# fields to write only where the store has them (see FieldChoice).
SinkFactory = Callable[[str, Sequence[str], Sequence[str]], Sink]
_SCHEMES: dict[str, SinkFactory] = {}


def register_sink_scheme(scheme: str, factory: SinkFactory) -> None:
    _SCHEMES[scheme] = factory


def _load_builtin() -> None:
    # Imported here, not at module top, so reading one store never imports every store's SDK.
    from augment_it.sinks import airtable, databricks, nocodb  # noqa: F401


def open_sink(uri: str, default_fields: Sequence[str] = (), optional_fields: Sequence[str] = ()) -> Sink:
    """The sink for a destination URI such as `airtable://BASE/TABLE` or `nocodb://TABLE_ID`."""
    _load_builtin()
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    if scheme not in _SCHEMES:
        known = ", ".join(f"{s}://" for s in sorted(_SCHEMES))
        raise UserInputError(f"cannot write to {uri!r}: destinations are {known}")
    return _SCHEMES[scheme](uri, default_fields, optional_fields)


@dataclass(frozen=True)
class FieldChoice:
    """The fields a sink writes: those the URI names (`?fields=`), else the defaults (the template's
    answers), each of which must be a field of the records and of the store; plus, when the URI names
    none, the optional ones (the enrichers) where the records and the store have them. A table made
    for a template's answers rarely has a column for every enricher, and writing one it lacks fails
    every record."""

    fields: list[str]
    optional: list[str]

    @classmethod
    def of(cls, named: Sequence[str], default_fields: Sequence[str],
           optional_fields: Sequence[str]) -> FieldChoice:
        if named:
            return cls(list(named), [])
        return cls(list(default_fields), [f for f in optional_fields if f not in default_fields])

    def check(self, where: str, store_has: Container[str] | None) -> None:
        """Refuse fields the store has none of (STORE_HAS None: not known, nothing refused)."""
        missing = [f for f in self.fields if store_has is not None and f not in store_has]
        if missing:
            raise UserInputError(f"{where}: the table has no field(s) {', '.join(missing)} to write the "
                                 "answers to; add them, or choose the fields to write with ?fields=")

    def to_write(self, frame: pd.DataFrame, store_has: Container[str] | None) -> list[str]:
        """The fields to write from FRAME; STORE_HAS: the store's fields, None when not known (then
        every optional field the records have is sent)."""
        return [*writable_fields(frame, self.fields),
                *(f for f in self.optional if f in frame.columns and (store_has is None or f in store_has))]


def writable_fields(frame: pd.DataFrame, requested: Sequence[str]) -> list[str]:
    """The requested fields that the records have; a requested field they lack is a user error."""
    missing = [f for f in requested if f not in frame.columns]
    if missing and not frame.empty:
        raise UserInputError(f"the records have no field(s) {', '.join(missing)} to write "
                             f"(they have: {', '.join(c for c in frame.columns if not c.startswith('_'))})")
    return [f for f in requested if f in frame.columns]


__all__ = ["FieldChoice", "Sink", "SinkCounts", "in_batches", "open_sink", "present_values",
           "register_sink_scheme", "send_in_turn", "writable_fields"]
