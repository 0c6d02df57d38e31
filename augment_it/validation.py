"""Validate collected records with Great Expectations; bad rows go to quarantine with a reason.

Expectations run on a text view of the records so that one rule per declared type works for
every source (CSV gives strings, JSON and YAML give native values). Failed expectations are
mapped back to row indexes, so each quarantined record names its row and field.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, Field

from augment_it.deferred_imports import deferring
from augment_it.records import (
    ID,
    INT64_MAX,
    INT64_MIN,
    REASON,
    ROW,
    as_text,
    content_id,
    is_missing,
    is_system,
    user_fields,
)
from augment_it.sources import SOURCE

FieldType = Literal["string", "integer", "number", "boolean", "date", "url"]

TYPE_PATTERNS: dict[str, str] = {
    "integer": r"^[+-]?\d+$",
    "number": r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$",  # groups would make pandas warn
    "boolean": r"^(?i:true|false|yes|no|1|0)$",
    "date": r"^\d{4}-\d{2}-\d{2}",
    "url": r"^https?://\S+$",
}


def _integer_problem(text: str) -> str | None:
    # Integers are stored as 64-bit (Parquet, pandas Int64, the stores' BIGINT); a larger one
    # would crash the run or lose digits, so its record is quarantined instead.
    try:
        fits = INT64_MIN <= int(text) <= INT64_MAX
    except ValueError:  # past Python's 4300-digit limit for int(): far out of range too
        fits = False
    return None if fits else "is out of range for a 64-bit integer"


def _number_problem(text: str) -> str | None:
    return None if math.isfinite(float(text)) else "is out of range for a 64-bit float"


def _date_problem(text: str) -> str | None:
    """A real calendar date, or an ISO 8601 date and time (the pattern only checks the shape)."""
    try:
        dt.datetime.fromisoformat(text)
    except ValueError as exc:
        detail = str(exc)
        return "is not a valid date" + ("" if "isoformat" in detail else f" ({detail})")
    return None


# Checks the patterns cannot express, run in Python on values that match their pattern:
# (name in the validation report, check returning a problem or None).
VALUE_CHECKS: dict[str, tuple[str, Callable[[str], str | None]]] = {
    "integer": ("expect_column_values_to_fit_in_64_bits", _integer_problem),
    "number": ("expect_column_values_to_be_finite", _number_problem),
    "date": ("expect_column_values_to_be_calendar_dates", _date_problem),
}


class RecordSchema(BaseModel):
    """What a valid record must have: an id column, required fields and declared types."""

    id_column: str | None = None
    required: list[str] = Field(default_factory=list)
    types: dict[str, FieldType] = Field(default_factory=dict)

    def checked_columns(self) -> list[str]:
        columns = [self.id_column] if self.id_column else []
        return list(dict.fromkeys([*columns, *self.required, *self.types]))


@dataclass
class ValidationResult:
    valid: pd.DataFrame
    quarantined: pd.DataFrame
    expectations: list[dict[str, Any]] = field(default_factory=list)


def assign_ids(frame: pd.DataFrame, id_column: str | None) -> pd.DataFrame:
    """Give every record its stable `_id`: the id column's value, else a hash of its content."""
    out = frame.copy()
    if frame.empty:
        out[ID] = pd.Series(dtype=object)
    elif id_column and id_column in frame.columns:
        # as_text, not str: a date id reads 2024-01-05 and a Decimal its exact digits.
        ids = [None if is_missing(v) else as_text(v).strip() or None for v in frame[id_column]]
        out[ID] = pd.Series(ids, index=out.index, dtype=object)  # str dtype would turn None into NaN
    elif id_column:
        out[ID] = None  # the missing column is reported by validation
    else:
        out[ID] = [content_id(user_fields(r)) for r in frame.to_dict(orient="records")]
    return out


def validate_records(frame: pd.DataFrame, schema: RecordSchema) -> ValidationResult:
    if schema.id_column is None and ID in frame.columns:
        # The source has ids under our own name (a MongoDB export's `_id`): they are the ids.
        schema = schema.model_copy(update={"id_column": ID})
    frame = assign_ids(frame.reset_index(drop=True), schema.id_column)
    if frame.empty:
        return ValidationResult(frame, frame.assign(**{REASON: pd.Series(dtype=object)}))
    reasons: dict[int, list[str]] = defaultdict(list)
    where = frame[SOURCE].tolist() if SOURCE in frame.columns else [f"row {r}" for r in frame[ROW]]

    missing = [c for c in schema.checked_columns() if c not in frame.columns]
    present = [c for c in schema.checked_columns() if c in frame.columns]
    text = _text_view(frame, [ID, *present])
    suite = _build_suite(schema, present)
    results = _run_suite(text, suite)
    results += _check_values(text, schema, present, results)

    for column in missing:
        known = ", ".join(c for c in frame.columns if not is_system(c))
        for index in range(len(frame)):
            reasons[index].append(f"column '{column}' is missing from the source (it has: {known})")
    for result in results:
        for index in result["rows"]:
            reasons[index].append(_reason(result, text, index, schema))

    bad = sorted(reasons)
    quarantined = frame.iloc[bad].copy()
    # A quarantined record without a usable id still needs one to be traced by.
    quarantined[ID] = [content_id(user_fields(r)) if is_missing(i) else i
                       for i, r in zip(quarantined[ID], quarantined.to_dict(orient="records"), strict=True)]
    quarantined[REASON] = [f"{where[i]}: " + "; ".join(reasons[i]) for i in bad]
    valid = _coerce(frame.drop(index=bad), schema)
    summary = [{k: v for k, v in r.items() if k not in ("rows", "problems")} for r in results]
    summary += [{"expectation": "expect_column_to_exist", "column": c, "success": False,
                 "unexpected_count": len(frame)} for c in missing]
    return ValidationResult(valid.reset_index(drop=True), quarantined.reset_index(drop=True), summary)


def _reason(result: dict[str, Any], text: pd.DataFrame, index: int, schema: RecordSchema) -> str:
    column, kind = result["column"], result["expectation"]
    if column == ID and kind.endswith("not_be_null"):
        return f"id column '{schema.id_column}' is empty"
    if column == ID and kind.endswith("be_unique"):
        value = text.at[index, ID]
        return f"duplicate id '{value}' (in {schema.id_column or 'content hash'})"
    if kind.endswith("not_be_null"):
        return f"required field '{column}' is empty"
    value = text.at[index, column]
    if "problems" in result:
        return f"field '{column}' = {value!r} {result['problems'][index]}"
    return f"field '{column}' = {value!r} is not a valid {schema.types.get(column)}"


def _check_values(text: pd.DataFrame, schema: RecordSchema, present: list[str],
                  results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The VALUE_CHECKS, on values of their declared type that passed its pattern."""
    failed = {(r["column"], i) for r in results for i in r["rows"]}
    checks = []
    for column, kind in schema.types.items():
        if column not in present or kind not in VALUE_CHECKS:
            continue
        name, check = VALUE_CHECKS[kind]
        problems = {}
        for index, value in enumerate(text[column]):
            if value is not None and (column, index) not in failed and (problem := check(value)):
                problems[index] = problem
        checks.append({"expectation": name, "column": column, "success": not problems,
                       "unexpected_count": len(problems), "rows": list(problems), "problems": problems})
    return checks


def _text_view(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {c: [None if is_missing(v) else as_text(v).strip() for v in frame[c]] for c in columns},
        dtype=object,
    )


def import_great_expectations() -> ModuleType:
    """The GX package, imported without running what validation never uses.

    GX imports scipy.stats (for one expectation, KL divergence, not used here) and altair (for
    rendering charts) at its top: over a second of CPU, half of what importing GX costs, before
    any record is checked. They stay importable and load if anything touches them."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    # Each ephemeral context announces the temporary folder of a docs site nobody builds, at INFO,
    # on every run's terminal.
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
    with deferring("scipy.stats", "altair"):
        import great_expectations as gx
    return gx


def _build_suite(schema: RecordSchema, present: list[str]) -> list[Any]:
    gx = import_great_expectations()
    expectations: list[Any] = [
        gx.expectations.ExpectColumnValuesToNotBeNull(column=ID),
        gx.expectations.ExpectColumnValuesToBeUnique(column=ID),
    ]
    for column in schema.required:
        if column in present:
            expectations.append(gx.expectations.ExpectColumnValuesToNotBeNull(column=column))
    for column, kind in schema.types.items():
        if column in present and kind in TYPE_PATTERNS:
            expectations.append(
                gx.expectations.ExpectColumnValuesToMatchRegex(column=column, regex=TYPE_PATTERNS[kind])
            )
    return expectations


def _run_suite(text: pd.DataFrame, expectations: list[Any]) -> list[dict[str, Any]]:
    gx = import_great_expectations()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    name = f"records-{uuid.uuid4().hex[:8]}"
    asset = context.data_sources.add_pandas(name).add_dataframe_asset(name)
    batch = asset.add_batch_definition_whole_dataframe(name).get_batch(
        batch_parameters={"dataframe": text}
    )
    suite = gx.ExpectationSuite(name=name, expectations=expectations)
    outcome = batch.validate(suite, result_format={"result_format": "COMPLETE"})
    results = []
    for result in outcome.results:
        config = result.expectation_config
        raised = (result.exception_info or {}).get("raised_exception")
        if raised:
            message = (result.exception_info or {}).get("exception_message")
            raise RuntimeError(f"validation of column '{config.kwargs.get('column')}' failed: {message}")
        rows = result.result.get("unexpected_index_list") or []
        results.append({
            "expectation": config.type,
            "column": config.kwargs.get("column"),
            "success": bool(result.success),
            "unexpected_count": len(rows),
            "rows": [int(r) for r in rows],
        })
    return results


def _coerce(frame: pd.DataFrame, schema: RecordSchema) -> pd.DataFrame:
    """Give validated columns their declared types (every value is known to parse and fit)."""
    out = frame.copy()
    for column, kind in schema.types.items():
        if column not in out.columns:
            continue
        values = out[column]
        if kind == "integer":
            out[column] = pd.array([None if is_missing(v) else int(str(v).strip()) for v in values],
                                   dtype="Int64")
        elif kind == "number":
            out[column] = pd.array([None if is_missing(v) else float(str(v).strip()) for v in values],
                                   dtype="Float64")
        elif kind == "boolean":
            out[column] = pd.array(
                [None if is_missing(v) else str(v).strip().lower() in {"true", "yes", "1"} for v in values],
                dtype="boolean",
            )
    return out
