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
# A character outside ASCII that was decoded, not escaped: the file holds valid UTF-8 text.
_DECODED_BEYOND_ASCII = re.compile("[^\x00-\x7f\ud800-\udfff]")


def text_encoding(name: str) -> str:
    """NAME as Python calls the text encoding (`windows-1252` → `cp1252`); refused unless it is one."""
    try:
        b"a".decode(name)  # LookupError for unknown names and for codecs that are not text (base64)
    except UnicodeDecodeError:
        pass  # a text encoding that needs more bytes (utf-16)
    except LookupError:
        raise InputError(f"unknown text encoding {name!r}: name one such as cp1252 (Windows' Western "
                         "European), latin-1, cp1250, shift_jis or utf-16") from None
    return codecs.lookup(name).name


def read_text(uri: str, encoding: str | None = None) -> str:
    fs, path = filesystem(uri)
    with fs.open(path, "rb") as handle:
        return decode(handle.read(), uri, encoding)


# UTF-32's little-endian mark starts with UTF-16's, so it is looked for first.
_WIDE_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
              (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))


def decode(raw: bytes, name: str, encoding: str | None = None) -> str:
    """A file's text: UTF-8 (a BOM dropped), or UTF-16/32 where a byte order mark says so, as
    Excel's "Unicode Text" and Windows PowerShell 5's Out-File save them; ENCODING where a file
    has no byte order mark (a mark says what the file is, whatever the user thought).

    Undecodable bytes survive as lone surrogates, so the record holding them can be named and
    quarantined instead of failing the whole file."""
    for bom, codec in _WIDE_BOMS:
        if raw.startswith(bom):
            try:
                return raw.decode(codec.lower())  # the codec reads the mark and drops it
            except UnicodeDecodeError as exc:
                raise InputError(f"{name}: starts with a {codec} byte order mark but is not valid {codec} "
                                 f"(byte {exc.start}); save the file as UTF-8") from None
    if encoding and not raw.startswith(codecs.BOM_UTF8):
        try:
            return raw.decode(encoding, errors="surrogateescape")
        except UnicodeDecodeError as exc:  # surrogateescape takes bytes one by one; UTF-16's come in pairs
            raise InputError(f"{name}: is not valid {encoding} (byte {exc.start}: {exc.reason})") from None
    return raw.decode("utf-8-sig", errors="surrogateescape")


def encoding_advice(text: str, encoding: str | None) -> str:
    """What to do about a file read as UTF-8 (no ENCODING named) in which no character beyond ASCII
    was UTF-8: one in a legacy encoding, as Excel's plain "CSV" and Notepad's "ANSI" save it, whose
    every record with an accent would be quarantined. Nothing for a UTF-8 file with a few bad bytes
    (nor one that is fine): read as anything else, its valid text would be garbled. No guess at the
    encoding: a file's few accented names are too little to tell cp1250 from cp1252
    (charset_normalizer took "Łódź" for cp1252 and "Иван" for big5hkscs)."""
    if encoding or not SURROGATE.search(text) or _DECODED_BEYOND_ASCII.search(text):
        return ""
    return ('; the file is not UTF-8: name its encoding (--encoding cp1252 for Windows\' "ANSI" in '
            "Western Europe, as Excel's plain \"CSV\" saves it) or save it as UTF-8")


def refusal_advice(file_text: str, encoding: str | None) -> str:
    """What to do about a file refused whole (its header, its YAML) for bytes it cannot decode."""
    return encoding_advice(file_text, encoding) or "; save the file as UTF-8"


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


def invalid_text(record: dict[str, Any], encoding: str | None = None) -> str | None:
    """Which field of RECORD holds bytes its file's encoding (UTF-8 unless named) could not decode."""
    codec = encoding or "UTF-8"
    for key, value in record.items():
        if isinstance(key, str) and (found := SURROGATE.search(key)):
            return (f"field name '{printable(key)}' is not valid {codec} "
                    f"({bad_char(key, found.start())} at char {found.start()})")
        hit = _surrogate_in(value, str(key))
        if hit is not None:
            where, text, index = hit
            at = f"char {index}" if where == key else f"{where} char {index}"
            return f"field '{key}' is not valid {codec} ({bad_char(text, index)} at {at})"
    return None


def reject_invalid_text(read: SourceRead, encoding: str | None = None, advice: str = "") -> None:
    """Quarantine the records holding undecodable text, each naming its field, then ADVICE."""
    kept = []
    for record in read.records:
        problem = invalid_text(record, encoding)
        if problem is None:
            kept.append(record)
        else:
            read.reject(record[ROW], record[SOURCE], f"{record[SOURCE]}: {problem}{advice}",
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
