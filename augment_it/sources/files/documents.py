"""Records from parsed JSON and YAML documents: lists, wrappers and objects, and the check
that no key of a record was given twice."""

from __future__ import annotations

import json
import warnings
from collections import Counter
from typing import Any

from augment_it.errors import InputNotice
from augment_it.records import InputError
from augment_it.sources import SourceRead
from augment_it.sources.files.text import printable


class RepeatedKeys(dict):
    """A parsed object in which a key appears more than once: the dict holds the last value, as
    json and PyYAML give it; `pairs` holds every (key, value) as written."""

    pairs: list[tuple[Any, Any]]


def json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's object_pairs_hook: a plain dict, or a RepeatedKeys when a key repeats."""
    fields = dict(pairs)
    if len(fields) == len(pairs):
        return fields
    repeated = RepeatedKeys(fields)
    repeated.pairs = pairs
    return repeated


def repeated_key(value: Any, parent: str = "") -> str | None:
    """The first key given more than once, nested ones too, as "field 'a.b' appears N times"
    (`parent` is the path down to `value`).

    Keys compare as read (YAML's `1` and `true` are one dict key) and as the text they are
    stored under (YAML's `1` and `'1'` become one field name)."""
    if isinstance(value, dict):
        # A plain dict of text keys (every JSON object without a repeat) cannot repeat one: the
        # counting is for the objects json marked and for YAML's non-text keys.
        if isinstance(value, RepeatedKeys) or not all(type(k) is str for k in value):
            keys = [k for k, _ in value.pairs] if isinstance(value, RepeatedKeys) else list(value)
            for counts in (Counter(keys), Counter(map(str, keys))):
                if repeat := next((k for k, n in counts.items() if n > 1), None):
                    same = [k for k in keys if k == repeat or str(k) == str(repeat)]
                    # YAML's `1` and `true` are one key: name both, or the reason names one of them.
                    written = list(dict.fromkeys(f"'{k}'" if isinstance(k, str) else json.dumps(k)
                                                 for k in same))
                    shown = f" (written {', '.join(written)})" if len(written) > 1 else ""
                    return f"field '{parent}{'.' if parent else ''}{repeat}' appears {len(same)} times{shown}"
        for key, item in value.items():
            if isinstance(item, dict | list) and (
                    found := repeated_key(item, f"{parent}{'.' if parent else ''}{key}")):
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, dict | list) and (found := repeated_key(item, f"{parent}[{index}]")):
                return found
    return None


def _as_written(value: Any) -> str:
    """A parsed value as JSON text, with every pair of an object whose key repeats."""
    if isinstance(value, dict):
        pairs = value.pairs if isinstance(value, RepeatedKeys) else value.items()
        return "{" + ", ".join(f"{json.dumps(str(k), ensure_ascii=False)}: {_as_written(v)}"
                               for k, v in pairs) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(map(_as_written, value)) + "]"
    return json.dumps(value, default=str, ensure_ascii=False)


def add_mapping(read: SourceRead, item: Any, row: int, where: str, line: str | None = None) -> None:
    """Keep a parsed object as a record; reject anything else, or an object with a repeated key,
    keeping `line` (the text it was parsed from) or else the value as JSON text."""
    if not isinstance(item, dict):
        problem = f"expected an object of fields, got {type(item).__name__}"
    elif repeated := repeated_key(item):
        problem = f"{repeated}; rename or remove all but one"
    else:
        read.add({str(k): v for k, v in item.items()}, row, where)
        return
    read.reject(row, where, f"{where}: {problem}", raw=printable(line or _as_written(item))[:2000])


def _records_list(data: dict[str, Any], where: str) -> tuple[str, list[Any]] | None:
    """The (key, list) of a wrapper object like {"records": [...]}: its only list holding objects,
    or its only value when that is an empty list."""
    lists = [(k, v) for k, v in data.items() if isinstance(v, list) and any(isinstance(i, dict) for i in v)]
    if len(lists) == 1:
        if others := [str(k) for k in data if k != lists[0][0]]:
            warnings.warn(f"{where}: reading the records under '{lists[0][0]}'; ignoring the other "
                          f"top-level keys ({', '.join(others)})", InputNotice, stacklevel=2)
        return lists[0]
    if len(data) == 1 and (only := next(iter(data.items())))[1] == []:
        return only
    return None


def add_items(read: SourceRead, data: Any, where: str, expected: str, *, document: bool = False) -> None:
    """Records from one parsed document: a list of mappings, a mapping wrapping one, or one mapping
    (named `where` when it is one of several YAML documents, `where[0]` when it is the file)."""
    if isinstance(data, dict) and (wrapped := _records_list(data, where)):
        if isinstance(data, RepeatedKeys) and (times := [k for k, _ in data.pairs].count(wrapped[0])) > 1:
            raise InputError(f"{where}: key '{wrapped[0]}' appears {times} times; the records under all "
                             "but the last would be lost")
        where, data = f"{where}[{json.dumps(str(wrapped[0]), ensure_ascii=False)}]", wrapped[1]
    elif document and not isinstance(data, list):
        add_mapping(read, data, len(read.records) + len(read.rejects) + 1, where)  # rejects a scalar
        return
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise InputError(f"{where}: expected {expected}, got {type(data).__name__}")
    for index, item in enumerate(data):
        add_mapping(read, item, len(read.records) + len(read.rejects) + 1, f"{where}[{index}]")
