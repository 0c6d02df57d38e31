"""Excel workbooks (.xlsx, .xlsm), read with openpyxl: one sheet, as a table under its header row.

The first sheet shown (not a hidden or a chart sheet), or the one a URI names after `#`
(`companies.xlsx#Prospects`). Empty rows above the header and between records are skipped, and
the header is read as a CSV's is (named_columns): unnamed columns at its end that hold no value
are dropped. Cells keep their type: numbers, booleans, dates (a date
without a time of day as a date), times as `13:45:00`, durations. A formula gives the value Excel
last computed and saved (a workbook a program wrote and no spreadsheet app saved has none, and its
formula cells read as empty); an error value (`#DIV/0!`, `#N/A`) reads as empty, and the run's
log names the column, the rows and the error.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from augment_it.errors import InputNotice, first_few
from augment_it.layout import filesystem
from augment_it.records import InputError
from augment_it.sources import SourceRead, holds_value
from augment_it.sources.files.delimited import named_columns, unnamed_column_value

if TYPE_CHECKING:
    from openpyxl import Workbook
    from openpyxl.cell.read_only import ReadOnlyCell
    from openpyxl.worksheet._read_only import ReadOnlyWorksheet


def read_xlsx(uri: str, name: str, sheet: str | None = None) -> SourceRead:
    with _workbook(uri, name) as workbook:
        return _read_sheet(_sheet(workbook, name, sheet), name)


def check_sheet(uri: str, name: str, sheet: str) -> None:
    """Refuse a sheet the workbook does not have, before anything is run."""
    with _workbook(uri, name) as workbook:
        _sheet(workbook, name, sheet)


@contextmanager
def _workbook(uri: str, name: str) -> Iterator[Workbook]:
    from openpyxl import load_workbook

    fs, path = filesystem(uri)
    with fs.open(path, "rb") as handle:
        try:
            # data_only: a formula's saved value, not its text; read_only streams rows.
            workbook = load_workbook(handle, read_only=True, data_only=True)
        except Exception as exc:  # a damaged workbook fails in zipfile, in either XML parser, ...
            raise InputError(f"{name}: not a readable Excel workbook (.xlsx): {exc}") from exc
        try:
            yield workbook
        finally:
            workbook.close()


def _sheet(workbook: Workbook, name: str, wanted: str | None) -> ReadOnlyWorksheet:
    """The sheet named WANTED (hidden or not), else the first one a spreadsheet app shows: hidden
    sheets (settings, lookups) and chart sheets are passed over."""
    tables = {sheet.title: sheet for sheet in workbook.worksheets}
    if wanted is not None:
        if wanted not in tables:
            what = "is a chart, not a table" if wanted in workbook.sheetnames else "is no sheet of it"
            raise InputError(f"{name}: '{wanted}' {what}: its sheets are {_listed(list(tables))}")
        return tables[wanted]
    shown = [title for title, sheet in tables.items() if sheet.sheet_state == "visible"] or list(tables)
    if not shown:
        raise InputError(f"{name} holds no sheet of cells, only charts")
    if len(shown) > 1:
        warnings.warn(f"{name}: read its first sheet, '{shown[0]}'; it also has {_listed(shown[1:])} "
                      f"(name one as {name}#{shown[1]} to read it instead)", InputNotice, stacklevel=4)
    return tables[shown[0]]


def _listed(names: list[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def _read_sheet(sheet: ReadOnlyWorksheet, name: str) -> SourceRead:
    label = f"{name}#{sheet.title}"
    rows = _rows_with_values(sheet, label)
    try:
        header_row, header_cells = next(rows)
    except StopIteration:
        raise InputError(f"{label}: the sheet is empty: no header and no records") from None
    named, problems = named_columns(["" if c.value is None else str(c.value).strip() for c in header_cells])
    if problems:
        raise InputError(f"{label}: header (row {header_row}) {'; '.join(problems)}: "
                         "give every column a name of its own")
    width = len(named)
    read = SourceRead()
    errors: defaultdict[tuple[str, str], list[int]] = defaultdict(list)  # (column, error): rows
    for number, cells in rows:
        if stray := next((c for c in cells[width:] if holds_value(c.value)), None):
            raise unnamed_column_value(f"{label}: row {number}", stray.column_letter, stray.value)
        record: dict[str, Any] = dict.fromkeys(named)  # a row may end before the header does
        for column, cell in zip(named, cells, strict=False):
            if cell.data_type == "e":
                errors[column, str(cell.value)].append(number)
            else:
                record[column] = _value(cell)
        read.add(record, number, f"{label}:{number}")
    for (column, error), numbers in errors.items():
        warnings.warn(f"{label}: column '{column}' read as empty in {len(numbers)} row(s) "
                      f"({first_few(numbers)}): the cell holds the error {error}", InputNotice, stacklevel=3)
    return read


def _rows_with_values(sheet: ReadOnlyWorksheet, label: str) -> Iterator[tuple[int, tuple[ReadOnlyCell, ...]]]:
    """Each row that has a value, with its number in the sheet."""
    # The size a workbook declares can be stale (some writers leave "A1"), and read-only openpyxl
    # would stop there: read every row the sheet holds instead.
    sheet.reset_dimensions()
    rows, number = enumerate(sheet.iter_rows(), start=1), 0
    while True:
        try:  # the sheet's XML is parsed as its rows are read
            number, cells = next(rows)
        except StopIteration:
            return
        except Exception as exc:
            raise InputError(f"{label}: not a readable sheet (row {number + 1}): {exc}") from exc
        if any(holds_value(cell.value) for cell in cells):
            yield number, cells


def _value(cell: ReadOnlyCell) -> Any:
    value = cell.value
    if value == "":
        return None
    # Excel holds a date as a date-time at midnight, and its format shows no time of day.
    if isinstance(value, dt.datetime) and value.time() == dt.time() and "h" not in cell.number_format.lower():
        return value.date()
    if isinstance(value, dt.time):
        return value.isoformat()
    return value
