"""File sources: CSV, TSV, JSON, JSONL, YAML, Markdown folders, Parquet.

- CSV: comma-separated unless the header line has no comma outside quotes and does have `;`, a
  tab or `|`, which is then the delimiter; a first line `sep=;` (Excel's) names it outright.
  Trailing unnamed header columns (Excel's `id,name,`) are dropped when every row leaves them
  empty. A row the csv module cannot parse is rejected with its line number and reading goes on
  with the next line.
- JSON: an array of objects; an object holding exactly one list of objects (`{"records": […]}`,
  `{"data": […], "total": 2}`) is unwrapped to those objects, its other keys are ignored; any
  other object is one record.
- JSONL: one object per line; only "\\n" ends a line, so U+2028 and friends inside a string do not.
- YAML: like JSON; several `---` documents are read in turn (a list gives its items, a mapping
  one record). Scalars follow YAML 1.2's core schema: `NO`, `on`, `yes` stay strings, `007` and
  `01234` stay strings as written, `2024-01-05` stays a string (no timestamps).
- Markdown: one record per note, its front matter (a mapping) plus `body` and `file`; a note
  whose front matter is not a mapping, or itself sets `body` or `file`, is rejected.
- Parquet: values as Python objects, so integer columns with nulls stay integers.
- Excel workbooks (.xlsx, .xlsm): the first sheet, or `book.xlsx#Sheet name`; see spreadsheet.py.
- Several files: a glob (`exports/2026-*.csv`, `exports/**/*.jsonl`) or a folder holding no
  Markdown note, read in name order, each by its extension, as one source; a record's `_source`
  names its file by its path under the folder (or the glob's fixed part). Hidden files and
  folders (`.trash/`, `.augment/`) are skipped, in a notes folder too.

Text files are UTF-8, or UTF-16/32 when a byte order mark says so (Excel's "Unicode Text",
Windows PowerShell 5's Out-File), or in the encoding the user names (`--encoding cp1252`). A record
holding bytes its file's encoding cannot decode is quarantined naming the field and the first such
byte; when no text in the file was UTF-8 (Excel's plain "CSV"), the reason says to name the file's
encoding.

A JSON, JSONL or YAML record in which a key appears twice, at any depth (json and PyYAML would
keep the last value silently), is rejected naming the key; a wrapper's records key given twice
refuses the file, since the records under all but the last would be lost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fsspec import AbstractFileSystem

from augment_it.layout import filesystem
from augment_it.records import ROW, InputError
from augment_it.sources import SourceRead

# The format modules are imported when a file of theirs is read, not here: the review stage reads
# its sheet with `delimited` and `text`, and its image has no Markdown or web libraries.

KINDS = {"csv": "csv", "tsv": "tsv", "json": "json", "jsonl": "jsonl", "ndjson": "jsonl",
         "yaml": "yaml", "yml": "yaml", "parquet": "parquet", "pq": "parquet",
         "md": "markdown", "markdown": "markdown", "xlsx": "xlsx", "xlsm": "xlsx"}
READS = ".csv, .tsv, .json, .jsonl, .yaml, .md, .parquet, .xlsx"
# Formats a user may well have whose reading is left to a tool that saves them in one of KINDS.
SAVE_AS = {"xls": "Excel 97-2003 (.xls): open it in Excel and save it as .xlsx",
           "ods": "OpenDocument (.ods): save it as .xlsx or CSV",
           "numbers": "Numbers (.numbers): export it as .xlsx or CSV"}
_GLOB = re.compile(r"[*?[]")


def open_file_source(uri: str, encoding: str | None = None) -> FileSource | FileSet:
    """A file, a folder of Markdown notes, a folder of data files, or a glob (`exports/2026-*.csv`);
    text files in ENCODING unless a byte order mark says otherwise (UTF-8 if None)."""
    if encoding:
        from augment_it.sources.files.text import text_encoding

        encoding = text_encoding(encoding)
    fs, path = filesystem(uri)
    if not fs.exists(path):
        if sheet := _workbook_sheet(fs, uri, path):
            return sheet
        if pattern := _GLOB.search(path):
            fixed = path[:pattern.start()].rsplit("/", 1)[0]  # the folder before the pattern
            matches = sorted(p for p in fs.glob(path) if fs.isfile(p) and visible(p.removeprefix(fixed)))
            if not matches:
                raise InputError(f"source {uri} does not exist, and no file matches it as a glob")
            return _file_set(fs, uri, fixed, matches, f"none of the files matching {uri}", encoding)
        raise InputError(f"source {uri} does not exist")
    if fs.isdir(path):
        found = [p for p in sorted(fs.find(path)) if visible(p[len(path):])]
        if any(_kind(p) == "markdown" for p in found):
            # A notes folder: the notes, whatever lies beside them.
            return FileSource(uri, "markdown", encoding=encoding)
        if not found:
            raise InputError(f"folder {uri} is empty")
        return _file_set(fs, uri, path, found, f"no file in folder {uri}", encoding)
    kind = _kind(path)
    if kind is None:
        if advice := SAVE_AS.get(path.rsplit(".", 1)[-1].lower()):
            raise InputError(f"{uri} is {advice}")
        raise InputError(f"cannot tell the format of {uri}: use {READS}, a folder of such files or a glob")
    return FileSource(uri, kind, encoding=encoding)


def _workbook_sheet(fs: AbstractFileSystem, uri: str, path: str) -> FileSource | None:
    """`book.xlsx#Sheet name`: that sheet of an existing workbook."""
    workbook, _, sheet = path.rpartition("#")
    if sheet and _kind(workbook) == "xlsx" and fs.isfile(workbook):
        from augment_it.sources.files.spreadsheet import check_sheet

        source = FileSource(uri.rpartition("#")[0], "xlsx", sheet=sheet)
        check_sheet(source.uri, source.name, sheet)
        return source
    return None


def visible(relative_path: str) -> bool:
    """Not hidden: a dot-folder holds a tool's own files (`.trash/` of deleted notes, `.augment/`)."""
    return not any(part.startswith(".") for part in relative_path.split("/"))


def _kind(path: str) -> str | None:
    name = path.rsplit("/", 1)[-1]
    return KINDS.get(name.rsplit(".", 1)[-1].lower()) if "." in name else None


def _file_set(fs: AbstractFileSystem, uri: str, base: str, paths: list[str], none_readable: str,
              encoding: str | None) -> FileSet:
    """The readable files among PATHS, each named by its path under BASE."""
    readable = [p for p in paths if _kind(p)]
    if not readable:
        names = ", ".join(p.rsplit("/", 1)[-1] for p in paths[:3]) + (", ..." if len(paths) > 3 else "")
        raise InputError(f"{none_readable} can be read ({names}): augment-it reads {READS}")
    full = fs.unstrip_protocol if "://" in uri else str
    return FileSet([FileSource(full(p), _kind(p), p.removeprefix(base).lstrip("/"), encoding)
                    for p in readable])


@dataclass
class FileSource:
    uri: str
    kind: str
    label: str = ""  # how records name the file; its name unless it is one of several
    encoding: str | None = None  # of a text file without a byte order mark; UTF-8 if None
    sheet: str | None = None  # of a workbook; its first if None

    @property
    def name(self) -> str:
        return self.label or self.uri.rstrip("/").rsplit("/", 1)[-1]

    def read(self) -> SourceRead:
        if self.kind == "markdown":
            from augment_it.sources.files.markdown import read_markdown

            return read_markdown(self.uri, self.encoding)
        if self.kind == "parquet":
            from augment_it.sources.files.parquet import read_parquet

            return read_parquet(self.uri, self.name)
        if self.kind == "xlsx":
            from augment_it.sources.files.spreadsheet import read_xlsx

            return read_xlsx(self.uri, self.name, self.sheet)
        from augment_it.sources.files import delimited, json_text, yaml_text
        from augment_it.sources.files.text import encoding_advice, read_text, reject_invalid_text

        text = read_text(self.uri, self.encoding)
        if not text.strip():
            raise InputError(f"source {self.uri} is empty: no header and no records")
        # A header or a YAML file with undecodable bytes is refused whole, naming the encoding.
        refusing = {"csv": delimited.read_csv, "tsv": delimited.read_tsv, "yaml": yaml_text.read_yaml}
        if self.kind in refusing:
            read = refusing[self.kind](text, self.name, self.encoding)
        else:
            read = {"json": json_text.read_json, "jsonl": json_text.read_jsonl}[self.kind](text, self.name)
        reject_invalid_text(read, self.encoding, encoding_advice(text, self.encoding))
        return read


@dataclass
class FileSet:
    """Several files read as one source, in name order; `_row` counts on across them."""

    files: list[FileSource]

    def read(self) -> SourceRead:
        read, offset = SourceRead(), 0
        for file in self.files:
            part = file.read()
            for record in part.records:
                record[ROW] += offset
            for reject in part.rejects:
                reject[ROW] += offset
            read.records += part.records
            read.rejects += part.rejects
            offset = max([offset, *(r[ROW] for r in part.records + part.rejects)])
        return read
