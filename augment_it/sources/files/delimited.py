"""CSV and TSV files, read row by row so a row the csv module refuses is rejected alone."""

from __future__ import annotations

import csv
import io
import re
import warnings
from collections import deque

from augment_it.errors import InputNotice
from augment_it.records import InputError
from augment_it.sources import SourceRead, holds_value
from augment_it.sources.files.text import SURROGATE, bad_char, printable, refusal_advice

SNIFFED_DELIMITERS = ";\t|"


class _Lines:
    """Lines for csv.reader that remembers the lines of the row being read and can hand some back,
    so a row the csv module refuses is rejected alone and reading goes on after it."""

    def __init__(self, text: str) -> None:
        self.pending = deque(io.StringIO(text, newline=""))  # split as csv expects: \n, \r\n or \r
        self.number = 0  # of the last line handed out
        self.taken: list[str] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if not self.pending:
            raise StopIteration
        line = self.pending.popleft()
        self.number += 1
        self.taken.append(line)
        return line

    def give_back(self, lines: list[str]) -> None:
        self.pending.extendleft(reversed(lines))
        self.number -= len(lines)


def _sniff_delimiter(text: str) -> str:
    """`,` unless the header line (the first that is not blank) has none outside quotes but has
    `;`, a tab or `|`."""
    first = re.search(r"^.*\S.*$", text, re.MULTILINE)
    header = re.sub(r'"[^"]*"', "", first.group() if first else "")
    if "," in header:
        return ","
    counts = {d: header.count(d) for d in SNIFFED_DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _read_delimited(text: str, name: str, delimiter: str, skip_lines: int = 0,
                    encoding: str | None = None) -> SourceRead:
    read = SourceRead()
    # A field cannot be longer than the file, so this limit never cuts a field (the default 128 KiB
    # would), and it is only ever raised.
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    lines = _Lines(text)
    for _ in range(skip_lines):
        next(lines)
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    try:
        header = next(reader)
        while not _has_value(header):  # blank lines, or a spreadsheet's empty rows, above the table
            header = next(reader)
    except StopIteration:
        raise InputError(f"{name}: every line is empty: no header and no records") from None
    except csv.Error as exc:
        raise InputError(f"{name}: the header row cannot be parsed: {exc}") from exc
    header_line, header_text = lines.number, delimiter.join(header)
    header = [h.strip() for h in header]
    for position, column in enumerate(header, start=1):
        if found := SURROGATE.search(column):
            # Every record would carry the broken name; one clear sentence beats a quarantined file.
            raise InputError(f"{name}: header column {position} ('{printable(column)}') is not valid "
                             f"{encoding or 'UTF-8'} ({bad_char(column, found.start())})"
                             + refusal_advice(text, encoding))
    named, problems = named_columns(header)
    if problems:
        raise InputError(f"{name}: header {'; '.join(problems)}: give every column a name of its own")
    width = len(named)
    row = 1
    other_widths: set[int] = set()  # of rows that do not fit the header
    fitting = 0
    while True:
        start_line = lines.number + 1
        lines.taken = []
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            row += 1
            taken = lines.taken
            if not lines.pending and "end of data" in str(exc):
                # A quote never closed ran to the end of the file: only its own line is bad, the
                # lines it swallowed are rows of their own.
                lines.give_back(taken[1:])
                taken = taken[:1]
                problem = f"{exc} (a quote opened on this line is never closed)"
            else:
                end = f" (to line {lines.number})" if lines.number > start_line else ""
                problem = f"{exc}{end}"
            read.reject(row, f"{name}:{start_line}", f"{name} line {start_line}: {problem}",
                        raw=printable("".join(taken))[:2000])
            continue
        row += 1
        if not _has_value(values):
            continue  # a blank line, or a row of empty cells (Excel saves formatted empty rows so)
        where = f"{name}:{start_line}"
        if len(values) > width and not _has_value(values[width:]):
            values = values[:width]  # empty cells under unnamed columns, or a delimiter ending the row
        elif width < len(values) <= len(header):
            position, value = next((p, v) for p, v in enumerate(values[width:], width + 1) if v.strip())
            raise unnamed_column_value(f"{name}: line {start_line}", str(position), value)
        if len(values) != width:
            other_widths.add(len(values))
            fields = f"{len(values)} field{'' if len(values) == 1 else 's'}"
            read.reject(row, where, f"{where}: row has {fields}, the header has "
                        f"{width} ({', '.join(named)})", raw=printable(delimiter.join(values)))
            continue
        fitting += 1
        read.add({h: (v if v != "" else None) for h, v in zip(named, values, strict=True)}, row, where)
    if not fitting and len(read.rejects) > 1 and len(other_widths) == 1 and max(other_widths) > width:
        # A report's title above the table ("Companies, Q3"): taken for the header, it made every
        # row a reject that named it, and nothing said why.
        raise InputError(f"{name}: every row has {max(other_widths)} fields but the header (line "
                         f"{header_line}: '{printable(header_text)[:60]}') has {width}: if that "
                         "line is a title above the table, remove it and any other line above the header")
    if width < len(header):
        warnings.warn(f"{name}: dropped {len(header) - width} unnamed column(s) at the end of the header, "
                      "empty in every row", InputNotice, stacklevel=3)
    return read


# Excel's first line naming the delimiter (written by some exports, honoured by Excel itself).
_SEP_LINE = re.compile(r'"?sep=(.)"?\r?(?:\n|$)')


def _has_value(cells: list[str]) -> bool:
    return any(map(holds_value, cells))


def named_columns(header: list[str]) -> tuple[list[str], list[str]]:
    """A header's names up to its last named column (unnamed ones at its end are dropped, as long
    as no row has a value there), and what is wrong with those names."""
    width = len(header)
    while width and not header[width - 1]:
        width -= 1
    return header[:width], _header_problems(header[:width])


def unnamed_column_value(where: str, column: str, value: object) -> InputError:
    return InputError(f"{where} has a value in column {column} ('{printable(str(value))[:40]}'), which the "
                      "header leaves unnamed: give the column a name or clear it")


def _header_problems(named: list[str]) -> list[str]:
    """Each unnamed column and each repeated name, by position, as a spreadsheet shows them."""
    first: dict[str, int] = {}
    problems = []
    for position, column in enumerate(named, start=1):
        if not column:
            problems.append(f"column {position} has no name")
        elif column in first:
            problems.append(f"column {position} repeats '{column}' (column {first[column]})")
        else:
            first[column] = position
    return problems


def csv_dialect(text: str) -> tuple[str, int]:
    """A CSV's delimiter and how many lines precede its header: Excel's `sep=` line, else sniffed
    (spreadsheets in locales with a decimal comma save `;`)."""
    if hint := _SEP_LINE.match(text):
        return hint.group(1), 1
    return _sniff_delimiter(text), 0


def read_csv(text: str, name: str, encoding: str | None = None) -> SourceRead:
    delimiter, skip_lines = csv_dialect(text)
    return _read_delimited(text, name, delimiter, skip_lines, encoding)


def read_tsv(text: str, name: str, encoding: str | None = None) -> SourceRead:
    return _read_delimited(text, name, "\t", encoding=encoding)
