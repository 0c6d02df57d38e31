"""What a record is once collected: its id, its source row, and the system columns around it."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from augment_it.errors import UserInputError

# System columns carry a leading underscore so they rarely meet a user's own field names.
ID = "_id"
ROW = "_row"  # 1-based position in the source, used to name a record in every error
SOURCE = "_source"  # where a record came from, e.g. "companies.csv:5", for error messages
REASON = "_reason"  # why a record was quarantined or failed
AI_STATUS = "_ai_status"  # ok | failed | skipped
RAW_ANSWER = "_raw_answer"  # the model's answer, kept when it could not be used
# The store's own key for a record (Airtable record id, NocoDB primary key, Databricks key column):
# sources set it so a sink can write onto the same record, whatever `_id` validation assigns. It is
# a key only in the table it was read from: sinks take it through `connections.store_key_for`.
STORE_KEY = "_store_key"
# Every column augment-it writes on a record (at collect, and in processing._augment_one). Known by
# name, not by the underscore: a user's own `_comment` is the user's, seen by templates like any field.
SYSTEM_COLUMNS = frozenset({ID, ROW, SOURCE, STORE_KEY, REASON, AI_STATUS, RAW_ANSWER, "_provider", "_model",
                            "_template", "_template_version", "_input_tokens", "_cached_input_tokens",
                            "_output_tokens", "_cost_usd", "_cached", "_calls"})
# The review stage's columns on every reviewed record: plain names, for the people reading exports.
REVIEW_STATUS, REVIEWED_BY, REVIEWED_AT = "review_status", "reviewed_by", "reviewed_at"
REVIEW_COMMENT = "review_comment"
REVIEW_COLUMNS = (REVIEW_STATUS, REVIEWED_BY, REVIEWED_AT, REVIEW_COMMENT)
# The review packet's and sheet's own columns beside the fields shown: the record's id, the
# reviewer's decision, and why it was flagged. A record's own field of such a name is not shown.
PACKET_ID, PACKET_DECISION, PACKET_FLAGS = "id", "decision", "flags"
PACKET_COLUMNS = (PACKET_ID, PACKET_DECISION, PACKET_FLAGS)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
FLOAT_EXACT_INT = 2**53  # beyond this a float cannot hold every integer


class InputError(UserInputError):
    """A source that cannot be read at all (missing file, wrong format, unreadable bytes)."""


def content_id(record: dict[str, Any]) -> str:
    """A stable id from a record's content: the same fields and values give the same id."""
    # Plain values first: a missing value hashes alike whether pandas held it as None, NaN or NA
    # (which depends on the other rows), so a record's id depends on its own content only.
    canonical = json.dumps(plain(record), sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def is_system(column: object) -> bool:
    """Whether COLUMN is one of augment-it's own (SYSTEM_COLUMNS) rather than the record's."""
    return column in SYSTEM_COLUMNS


def user_fields(record: dict[str, Any]) -> dict[str, Any]:
    """The record without system columns."""
    return {k: v for k, v in record.items() if not is_system(k)}


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, np.datetime64 | np.timedelta64):  # numpy's NaT is not pandas' NaT
        return bool(np.isnat(value))
    return value is pd.NA or value is pd.NaT


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def records_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """A frame of records in which integers stay integers.

    `pd.DataFrame(records)` turns a column of ints with one missing value into floats (1 → 1.0,
    12345678901234567 → 1.2345678901234568e+16), which then shows up in ids, in type checks and
    in the export. Such columns become nullable Int64, or exact Python ints beyond 64 bits.
    """
    frame = pd.DataFrame(records)
    for column in frame.columns:
        dtype = frame[column].dtype
        if not (pd.api.types.is_object_dtype(dtype) or pd.api.types.is_float_dtype(dtype)):
            continue  # text, dates, or ints pandas holds exactly (none missing)
        values = [r.get(column) for r in records]
        present = [v for v in values if not is_missing(v)]
        ints = [int(v) for v in present if _is_int(v)]
        if not ints:
            continue
        exact = [None if is_missing(v) else int(v) if _is_int(v) else v for v in values]
        if len(ints) == len(present) and min(ints) >= INT64_MIN and max(ints) <= INT64_MAX:
            frame[column] = pd.array(exact, dtype="Int64")
        elif len(ints) == len(present) or (pd.api.types.is_float_dtype(dtype)
                                           and max(abs(i) for i in ints) > FLOAT_EXACT_INT):
            frame[column] = pd.Series(exact, index=frame.index, dtype=object)
    return frame


def plain(value: Any, *, strict_json: bool = False) -> Any:
    """`value` as plain JSON-able Python: numpy scalars and arrays, dates, Decimals unwrapped.

    Dates and times become ISO 8601 text and Decimals their exact text, the way a user writes
    them. With `strict_json`, non-finite floats become None (JSON cannot carry them).
    """
    if isinstance(value, dict):
        return {str(k): plain(v, strict_json=strict_json) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [plain(v, strict_json=strict_json) for v in value]
    if is_missing(value):
        return None
    if isinstance(value, np.datetime64 | np.timedelta64):
        # .item() of a nanosecond one is a bare int (nanoseconds since 1970), not a time.
        value = pd.Timestamp(value) if isinstance(value, np.datetime64) else pd.Timedelta(value)
    if isinstance(value, np.generic):
        return plain(value.item(), strict_json=strict_json)
    if isinstance(value, dt.date | dt.time):  # pd.Timestamp is a datetime, a datetime a date
        return value.isoformat()
    if isinstance(value, dt.timedelta):  # ISO 8601 too: P0DT0H0M5S
        return pd.Timedelta(value).isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if strict_json and isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_storable(frame: pd.DataFrame, fmt: str = "parquet") -> pd.DataFrame:
    """Make a frame safe to write as `fmt` (parquet, csv or jsonl): in Parquet, a column of lists
    of one scalar type stays a list column; other nested or mixed-type columns become JSON text,
    booleans with gaps a nullable boolean column.

    Records come from loosely typed sources (YAML, JSON, front matter); one column may hold an
    int in one row and a list in the next, which Arrow refuses. Text keeps every value. A CSV
    holds only text: its booleans, times and durations are written by `as_text`, as JSONL writes
    them (`true`, `2024-01-05T10:00:00`, `P0DT0H1M30S`), not by pandas (`True`,
    `2024-01-05 10:00:00`, `0 days 00:01:30`).
    """
    out = frame.copy()
    out.attrs[JSON_TEXT_COLUMNS] = []
    out.attrs[LIST_COLUMNS] = []
    for column in out.columns:
        series = out[column]
        if series.dtype == object:
            kinds = {type(v) for v in series if not is_missing(v)}
            if kinds and kinds <= {bool, np.bool_}:  # pandas keeps bools with a gap as objects
                out[column] = pd.array([None if is_missing(v) else bool(v) for v in series], dtype="boolean")
                series = out[column]
            elif fmt == "jsonl":
                continue  # JSON holds nested and mixed values as they are
            elif fmt == "parquet" and (lists := _scalar_lists(series)) is not None:
                out[column] = pd.Series(lists, index=out.index, dtype=object)
                out.attrs[LIST_COLUMNS].append(column)
                continue
            elif not kinds <= {str}:
                out[column] = _texts(series)
                if all(issubclass(kind, CONTAINERS) for kind in kinds):
                    out.attrs[JSON_TEXT_COLUMNS].append(column)
                continue
        if fmt == "csv" and (pd.api.types.is_bool_dtype(series.dtype)
                             or pd.api.types.is_datetime64_any_dtype(series.dtype)
                             or pd.api.types.is_timedelta64_dtype(series.dtype)):
            out[column] = _texts(series)
    return out


# Columns of lists and mappings that `to_storable` wrote as JSON text; a Parquet file keeps their
# names (pandas stores `attrs`) so `from_storable` gives back the lists and mappings a template
# walks (`{{ address.city }}`), not their text.
JSON_TEXT_COLUMNS = "augment_it.json_text_columns"
# Columns `to_storable` kept as Parquet lists (tags, a multi-select): pandas reads their cells as
# numpy arrays, `from_storable` gives back lists.
LIST_COLUMNS = "augment_it.list_columns"
CONTAINERS = (list, tuple, dict, np.ndarray)
LIST_ITEM_TYPES = {str, bool, int, float}


def from_storable(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame as `to_storable` found it: its JSON-text columns of lists and mappings decoded,
    its list columns lists."""
    for column in frame.attrs.pop(JSON_TEXT_COLUMNS, []):
        frame[column] = pd.Series([None if is_missing(v) else json.loads(v) for v in frame[column]],
                                  index=frame.index, dtype=object)
    for column in frame.attrs.pop(LIST_COLUMNS, []):
        frame[column] = pd.Series([v.tolist() if isinstance(v, np.ndarray) else v for v in frame[column]],
                                  index=frame.index, dtype=object)
    return frame


def _scalar_lists(series: pd.Series) -> list[list[Any] | None] | None:
    """The column's values as lists if every present value is a list of non-missing items of one
    type (text, booleans, integers within int64 or floats), as Arrow stores them exactly; else None.
    A column with no item at all stays JSON text: Arrow would give it no item type."""
    lists: list[list[Any] | None] = []
    item_types: set[type] = set()
    for value in series:
        if is_missing(value):
            lists.append(None)
            continue
        if not isinstance(value, list | tuple | np.ndarray):
            return None
        items = plain(value)
        item_types.update(type(item) for item in items)
        lists.append(items)
    if len(item_types) != 1 or not item_types <= LIST_ITEM_TYPES:
        return None
    if item_types == {int} and not all(INT64_MIN <= i <= INT64_MAX for items in lists for i in items or ()):
        return None
    return lists


def _texts(series: pd.Series) -> list[str | None]:
    return [None if is_missing(v) else as_text(v) for v in series]


def as_text(value: Any) -> str:
    """A value as the text a user would write: dates in ISO 8601, Decimals exact, 1 not 1.0."""
    value = plain(value)
    if isinstance(value, str):
        return value  # text, or a date or Decimal already written out as the user wrote it
    return json.dumps(value, default=str, ensure_ascii=False)
