"""Frames written as Excel workbooks (`--format xlsx`), for people who open the outcome in Excel.

Values are those a CSV export holds (`to_storable(frame, "csv")`), numbers kept as numbers. Every
text is a text cell: an answer starting with `=` is never a formula Excel would run (a model that
read web pages can write `=HYPERLINK(...)`). What Excel cannot hold is changed and counted: control
characters become U+FFFD, and text beyond a cell's 32,767 characters is cut, ending in `…`.
"""

from __future__ import annotations

import warnings
from typing import IO

import pandas as pd

from augment_it.errors import InputNotice
from augment_it.records import is_missing

CELL_LIMIT = 32_767  # characters Excel keeps in one cell


def write_xlsx(frame: pd.DataFrame, handle: IO[bytes], name: str) -> None:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    book = Workbook(write_only=True)
    sheet = book.create_sheet(name[:31])  # Excel's limit on a sheet's name
    cut = 0

    def text_cell(text: str) -> WriteOnlyCell:
        nonlocal cut
        text = ILLEGAL_CHARACTERS_RE.sub("\ufffd", text)
        if len(text) > CELL_LIMIT:
            text, cut = text[:CELL_LIMIT - 1] + "\u2026", cut + 1
        cell = WriteOnlyCell(sheet, value=text)
        cell.data_type = "s"  # openpyxl would take "=..." for a formula
        return cell

    sheet.append([text_cell(str(column)) for column in frame.columns])
    for row in frame.itertuples(index=False, name=None):
        sheet.append([None if is_missing(value) else text_cell(value) if isinstance(value, str) else value
                      for value in row])
    book.save(handle)
    if cut:
        warnings.warn(f"{name}.xlsx: {cut} cell(s) held more than Excel's {CELL_LIMIT:,} characters and "
                      "were cut; --format parquet, csv or jsonl keeps them whole", InputNotice, stacklevel=2)
