"""Parquet files."""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from augment_it.layout import filesystem
from augment_it.records import JSON_TEXT_COLUMNS, InputError
from augment_it.sources import SourceRead


def read_parquet(uri: str, name: str) -> SourceRead:
    fs, path = filesystem(uri)
    try:
        with fs.open(path, "rb") as handle:
            # Python objects, not a pandas frame: int64 columns with nulls would become float64
            # there (ids "1.0", and 2**53 + 1 rounded). No Arrow threads: with them the process
            # sometimes aborts at exit ("terminate called without an active exception",
            # apache/arrow#34314), and a source file is read once.
            table = pq.read_table(handle, use_threads=False, pre_buffer=False)
            rows = _python_rows(table)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise InputError(f"{name}: not a readable Parquet file: {exc}") from exc
    _decode_json_text(rows, table.schema.metadata or {})
    _decode_unmarked_text(rows, table.schema)
    read = SourceRead()
    for row, record in enumerate(rows, start=1):
        read.add(record, row, f"{name}[{row - 1}]")
    return read


def _python_rows(table: pa.Table) -> list[dict[str, Any]]:
    """Rows with MAP values as dicts, which a template reads as `{{ attrs.color }}` (pyarrow gives
    a list of (key, value) pairs); as pairs still if a map repeats a key, so no value is lost."""
    try:
        return table.to_pylist(maps_as_pydicts="strict")
    except KeyError:
        return table.to_pylist()


# Control characters other than tab and line breaks: bytes that decode as UTF-8 but are not text.
_BINARY = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _decode_unmarked_text(rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    """Text in binary columns, as text. Hive, Impala and older Spark write strings as BINARY without
    the UTF8 annotation (Spark's `binaryAsString` setting exists for them), and pyarrow gives bytes:
    a prompt said "About b'Acme'". A column stays bytes unless every value in it is UTF-8 text."""
    for field in schema:
        if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
            values = [record.get(field.name) for record in rows]
            texts = [None if value is None else _text(value) for value in values]
            if all(text is not None for text, value in zip(texts, values, strict=True) if value is not None):
                for text, record in zip(texts, rows, strict=True):
                    record[field.name] = text


def _text(value: bytes) -> str | None:
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if _BINARY.search(text) else text


def _decode_json_text(rows: list[dict[str, Any]], metadata: dict[bytes, bytes]) -> None:
    """Lists and mappings that augment-it wrote as JSON text (an export read again), as they were.

    pandas keeps a frame's `attrs` under PANDAS_ATTRS; `to_storable` names those columns there."""
    try:
        columns = json.loads(metadata.get(b"PANDAS_ATTRS", b"{}")).get(JSON_TEXT_COLUMNS, [])
    except (ValueError, AttributeError):
        return  # someone else's attrs: nothing of ours to decode
    for record in rows:
        for column in columns:
            if isinstance(text := record.get(column), str):
                with contextlib.suppress(ValueError):
                    record[column] = json.loads(text)
