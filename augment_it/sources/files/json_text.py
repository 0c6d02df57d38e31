"""JSON and JSONL files."""

from __future__ import annotations

import json

from augment_it.records import InputError
from augment_it.sources import SourceRead
from augment_it.sources.files.documents import add_items, add_mapping, json_object
from augment_it.sources.files.text import printable


def read_json(text: str, name: str) -> SourceRead:
    try:
        data = json.loads(text, object_pairs_hook=json_object)
    except json.JSONDecodeError as exc:
        raise InputError(f"{name}: not valid JSON (line {exc.lineno}, column {exc.colno}: "
                         f"{exc.msg}); use .jsonl for one record per line") from exc
    read = SourceRead()
    add_items(read, data, name, "a JSON array of objects")
    return read


def read_jsonl(text: str, name: str) -> SourceRead:
    read = SourceRead()
    row = 0
    # Only "\n" ends a line: str.splitlines() would also split at U+2028, U+0085, \x0b, \x0c or
    # \x1c-\x1e, which JSON allows raw inside strings.
    for line_no, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        row += 1
        where = f"{name}:{line_no}"
        try:
            item = json.loads(line, object_pairs_hook=json_object)
        except json.JSONDecodeError as exc:
            read.reject(row, where, f"{where}: not valid JSON ({exc.msg} at column {exc.colno})",
                        raw=printable(line)[:2000])
            continue
        add_mapping(read, item, row, where, line)
    return read
