"""Sources: where records come from, chosen by URI scheme or file extension.

A source's `read()` returns every record it could read plus a reject for every one it could not,
so nothing is lost between the store and the quarantine.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

from augment_it.records import (
    ID,
    REASON,
    REVIEW_COLUMNS,
    ROW,
    SOURCE,
    STORE_KEY,
    SYSTEM_COLUMNS,
    InputError,
    is_missing,
    plain,
    records_frame,
)

# A field a source names like one of augment-it's columns would be overwritten, so such a record is
# rejected. `_id` is not among them: it is the id when no other column is named as the id.
RESERVED = SYSTEM_COLUMNS - {ID}


@dataclass
class SourceRead:
    records: list[dict] = field(default_factory=list)  # each with ROW and SOURCE set
    rejects: list[dict] = field(default_factory=list)  # ROW, SOURCE, REASON and whatever was read

    def add(self, fields: Mapping[str, Any], row: int, source: str, store_key: Any = None,
            generated: Collection[str] = ()) -> None:
        """Keep a record with its row, where it came from and (from a store) the store's own key.

        A field named like one of augment-it's own columns would be overwritten and lost, so such
        a record is rejected, naming the fields to rename. GENERATED are fields the store fills in
        itself (a row number), which hold a value in a row nobody filled in."""
        if ROW in fields and SOURCE in fields:
            # A file augment-it wrote (exported, failed, quarantined), read again to chain a second
            # template or rerun fixed rows: its own columns are the last run's, which this run
            # writes anew. Every outcome row has both; a user's own data hardly ever does.
            fields = {k: v for k, v in fields.items() if k not in RESERVED and k not in REVIEW_COLUMNS}
        taken = sorted(name for name in fields if name in RESERVED)
        if taken:
            self.reject(row, source, f"{source}: field {', '.join(map(repr, taken))} has a name augment-it "
                        "uses for its own columns; rename it in the source",
                        raw=_as_raw(fields))
            return
        if not any(holds_value(value) for name, value in fields.items() if name not in generated):
            # An empty object, or a store's blank row (Airtable gives `"fields": {}`): a prompt
            # about nothing would still be paid for.
            self.reject(row, source, f"{source}: no field holds a value",
                        raw=_as_raw(fields))
            return
        record = {**fields, ROW: row, SOURCE: source}
        if store_key is not None:
            record[STORE_KEY] = store_key
        self.records.append(record)

    def reject(self, row: int, source: str, reason: str, **raw: object) -> None:
        self.rejects.append({ROW: row, SOURCE: source, REASON: reason, **raw})

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        # Not pd.DataFrame(records): it makes floats of integer columns with a missing value.
        return records_frame(self.records), records_frame(self.rejects)


def _as_raw(fields: Mapping[str, Any]) -> str:
    """A rejected record's fields as the quarantine shows them: JSON, cut at 2,000 characters."""
    return json.dumps(plain(dict(fields)), ensure_ascii=False, default=str)[:2000]


def holds_value(value: Any) -> bool:
    """Whether a cell or field holds anything: blank text, an empty list and a missing value do not."""
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, list | tuple | dict):
        return bool(value)
    return not is_missing(value)


class Source(Protocol):
    def read(self) -> SourceRead: ...


SourceFactory = Callable[[str], Source]
_SCHEMES: dict[str, SourceFactory] = {}


def register_scheme(scheme: str, factory: SourceFactory) -> None:
    _SCHEMES[scheme] = factory


def open_source(uri: str, encoding: str | None = None) -> Source:
    """The source for a URI: `scheme://…` for services, a path or fsspec URL for files, whose text
    is in ENCODING (UTF-8 if None) unless a byte order mark says otherwise."""
    from augment_it.sources import airtable, databricks, files, nocodb, web  # noqa: F401  (register their schemes)

    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    if scheme in _SCHEMES:
        if encoding:
            where = "in the URI (&encoding=)" if scheme == "web" else "only for files"
            raise InputError(f"an encoding ({encoding}) is {where}: {scheme}:// does not take one")
        return _SCHEMES[scheme](uri)
    return files.open_file_source(uri, encoding)


__all__ = ["REASON", "ROW", "SOURCE", "InputError", "Source", "SourceRead", "open_source"]
