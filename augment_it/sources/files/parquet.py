"""Parquet files."""

from __future__ import annotations

import pyarrow.parquet as pq

from augment_it.layout import filesystem
from augment_it.records import InputError
from augment_it.sources import SourceRead


def read_parquet(uri: str, name: str) -> SourceRead:
    fs, path = filesystem(uri)
    try:
        with fs.open(path, "rb") as handle:
            # Python objects, not a pandas frame: int64 columns with nulls would become float64
            # there (ids "1.0", and 2**53 + 1 rounded). No Arrow threads: with them the process
            # sometimes aborts at exit ("terminate called without an active exception",
            # apache/arrow#34314), and a source file is read once.
            rows = pq.read_table(handle, use_threads=False, pre_buffer=False).to_pylist()
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise InputError(f"{name}: not a readable Parquet file: {exc}") from exc
    read = SourceRead()
    for row, record in enumerate(rows, start=1):
        read.add(record, row, f"{name}[{row - 1}]")
    return read
