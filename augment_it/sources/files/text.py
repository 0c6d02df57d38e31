"""A file's text: its encoding, and the records holding text that is not valid Unicode."""

from __future__ import annotations

import codecs
import json
import re
from typing import Any

from augment_it.layout import filesystem
from augment_it.records import ROW, InputError
from augment_it.sources import SOURCE, SourceRead

# Undecodable bytes become U+DC80..U+DCFF (surrogateescape); JSON can also spell lone surrogates.
# Neither can be stored as UTF-8, so a record holding one is quarantined.
SURROGATE = re.compile("[\ud800-\udfff]")


def read_text(uri: str) -> str:
    fs, path = filesystem(uri)
    with fs.open(path, "rb") as handle:
        return decode(handle.read(), uri)


# UTF-32's little-endian mark starts with UTF-16's, so it is looked for first.
_WIDE_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
              (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))


def decode(raw: bytes, name: str) -> str:
    """A file's text: UTF-8 (a BOM dropped), or UTF-16/32 where a byte order mark says so, as
    Excel's "Unicode Text" and Windows PowerShell 5's Out-File save them.

    Undecodable UTF-8 bytes survive as lone surrogates, so the record holding them can be named
    and quarantined instead of failing the whole file."""
    for bom, codec in _WIDE_BOMS:
        if raw.startswith(bom):
            try:
                return raw.decode(codec.lower())  # the codec reads the mark and drops it
            except UnicodeDecodeError as exc:
                raise InputError(f"{name}: starts with a {codec} byte order mark but is not valid {codec} "
                                 f"(byte {exc.start}); save the file as UTF-8") from None
    return raw.decode("utf-8-sig", errors="surrogateescape")


def bad_char(text: str, index: int) -> str:
    code = ord(text[index])
    if 0xDC80 <= code <= 0xDCFF:
        return f"byte 0x{code - 0xDC00:02x}"
    return f"lone surrogate \\u{code:04x}"


def _surrogate_in(value: Any, path: str) -> tuple[str, str, int] | None:
    """(where, text, index) of the first undecodable character in a value, nested ones too."""
    if isinstance(value, str):
        found = SURROGATE.search(value)
        return (path, value, found.start()) if found else None
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and (found := SURROGATE.search(key)):
                return (f"{path} (a field name)", key, found.start())
            if hit := _surrogate_in(item, f"{path}.{key}"):
                return hit
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            if hit := _surrogate_in(item, f"{path}[{index}]"):
                return hit
    return None


def _invalid_field(record: dict[str, Any]) -> str | None:
    for key, value in record.items():
        if isinstance(key, str) and (found := SURROGATE.search(key)):
            return (f"field name '{printable(key)}' is not valid UTF-8 "
                    f"({bad_char(key, found.start())} at char {found.start()})")
        hit = _surrogate_in(value, str(key))
        if hit is not None:
            where, text, index = hit
            at = f"char {index}" if where == key else f"{where} char {index}"
            return f"field '{key}' is not valid UTF-8 ({bad_char(text, index)} at {at})"
    return None


def reject_invalid_text(read: SourceRead) -> None:
    kept = []
    for record in read.records:
        problem = _invalid_field(record)
        if problem is None:
            kept.append(record)
        else:
            read.reject(record[ROW], record[SOURCE], f"{record[SOURCE]}: {problem}",
                        raw=json.dumps(printable(record), default=str, ensure_ascii=False))
    read.records = kept


def printable(value: Any) -> Any:
    """The value with every undecodable character (in keys and nested values too) as U+FFFD."""
    if isinstance(value, str):
        return SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {printable(k): printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [printable(v) for v in value]
    return value
