"""Sources: where records come from, chosen by URI scheme or file extension.

A source's `read()` returns every record it could read plus a reject for every one it could not,
so nothing is lost between the store and the quarantine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import pandas as pd

from augment_it.records import REASON, ROW, InputError, records_frame

SOURCE = "_source"  # where a record came from, e.g. "companies.csv:5", for error messages


@dataclass
class SourceRead:
    records: list[dict] = field(default_factory=list)  # each with ROW and SOURCE set
    rejects: list[dict] = field(default_factory=list)  # ROW, SOURCE, REASON and whatever was read

    def reject(self, row: int, source: str, reason: str, **raw: object) -> None:
        self.rejects.append({ROW: row, SOURCE: source, REASON: reason, **raw})

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        # Not pd.DataFrame(records): it makes floats of integer columns with a missing value.
        return records_frame(self.records), records_frame(self.rejects)


class Source(Protocol):
    def read(self) -> SourceRead: ...


SourceFactory = Callable[[str], Source]
_SCHEMES: dict[str, SourceFactory] = {}


def register_scheme(scheme: str, factory: SourceFactory) -> None:
    _SCHEMES[scheme] = factory


def open_source(uri: str) -> Source:
    """The source for a URI: `scheme://…` for services, a path or fsspec URL for files."""
    from augment_it.sources import airtable, databricks, files, nocodb, web  # noqa: F401  (register their schemes)

    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    if scheme in _SCHEMES:
        return _SCHEMES[scheme](uri)
    return files.open_file_source(uri)


__all__ = ["REASON", "ROW", "SOURCE", "InputError", "Source", "SourceRead", "open_source"]
