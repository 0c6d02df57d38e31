"""What a record is once collected: its id, its source row, and the system columns around it."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import pandas as pd

from augment_it.errors import UserInputError

# System columns carry a leading underscore so they never collide with a user's own fields.
ID = "_id"
ROW = "_row"  # 1-based position in the source, used to name a record in every error
REASON = "_reason"  # why a record was quarantined or failed
AI_STATUS = "_ai_status"  # ok | failed | skipped
SYSTEM_PREFIX = "_"


class InputError(UserInputError):
    """A source that cannot be read at all (missing file, wrong format, unreadable bytes)."""


def content_id(record: dict[str, Any]) -> str:
    """A stable id from a record's content: the same fields and values give the same id."""
    canonical = json.dumps(record, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def user_fields(record: dict[str, Any]) -> dict[str, Any]:
    """The record without system columns."""
    return {k: v for k, v in record.items() if not k.startswith(SYSTEM_PREFIX)}


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return value is pd.NA or value is pd.NaT


def to_storable(frame: pd.DataFrame) -> pd.DataFrame:
    """Make a frame safe to write as Parquet/CSV: nested or mixed-type columns become JSON text.

    Records come from loosely typed sources (YAML, JSON, front matter); one column may hold an
    int in one row and a list in the next, which Arrow refuses. Text keeps every value.
    """
    out = frame.copy()
    for column in out.columns:
        series = out[column]
        if series.dtype != object:
            continue
        kinds = {type(v) for v in series if not is_missing(v)}
        if kinds <= {str} or not kinds:
            continue
        out[column] = [None if is_missing(v) else _as_text(v) for v in series]
    return out


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, ensure_ascii=False)
