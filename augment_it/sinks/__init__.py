"""Sinks: where approved records go back to, chosen by URI scheme like sources.

A sink's `write(records)` writes each record's augmented fields onto the store and returns counts:
`updated`, `created`, `failed` (records the store refused) and the first `errors`. A store that
cannot be reached or refuses the credentials raises a UserInputError instead: nothing was written.
An update never sends a missing value (None, NaN): it would clear what the store holds now.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import pandas as pd

from augment_it.errors import UserInputError

MAX_ERRORS_KEPT = 20


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def present_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """The values to send to an existing record: a missing one (None, as `plain` makes of NaN) is
    left out, since sending null would clear what the store holds now, e.g. a value a teammate typed
    in while the run waited for review. A real value ("", 0, false) is kept."""
    return {name: value for name, value in values.items() if value is not None}


class Sink(Protocol):
    def write(self, records: pd.DataFrame) -> dict[str, Any]: ...


# A factory gets the destination URI and the fields to write when the URI names none (`?fields=`).
SinkFactory = Callable[[str, Sequence[str]], Sink]
_SCHEMES: dict[str, SinkFactory] = {}


def register_sink_scheme(scheme: str, factory: SinkFactory) -> None:
    _SCHEMES[scheme] = factory


def _load_builtin() -> None:
    # Imported here, not at module top, so reading one store never imports every store's SDK.
    from augment_it.sinks import airtable, databricks, nocodb  # noqa: F401


def open_sink(uri: str, default_fields: Sequence[str] = ()) -> Sink:
    """The sink for a destination URI such as `airtable://BASE/TABLE` or `nocodb://TABLE_ID`."""
    _load_builtin()
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    if scheme not in _SCHEMES:
        known = ", ".join(f"{s}://" for s in sorted(_SCHEMES))
        raise UserInputError(f"cannot write to {uri!r}: destinations are {known}")
    return _SCHEMES[scheme](uri, default_fields)


def writable_fields(frame: pd.DataFrame, requested: Sequence[str]) -> list[str]:
    """The requested fields that the records have; a requested field they lack is a user error."""
    missing = [f for f in requested if f not in frame.columns]
    if missing and not frame.empty:
        raise UserInputError(f"the records have no field(s) {', '.join(missing)} to write "
                             f"(they have: {', '.join(c for c in frame.columns if not c.startswith('_'))})")
    return [f for f in requested if f in frame.columns]


__all__ = ["Sink", "SinkCounts", "open_sink", "present_values", "register_sink_scheme", "writable_fields"]
