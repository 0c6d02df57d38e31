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

Text files are UTF-8, or UTF-16/32 when a byte order mark says so (Excel's "Unicode Text",
Windows PowerShell 5's Out-File); any other encoding names the first invalid byte.

A JSON, JSONL or YAML record in which a key appears twice, at any depth (json and PyYAML would
keep the last value silently), is rejected naming the key; a wrapper's records key given twice
refuses the file, since the records under all but the last would be lost.
"""

from __future__ import annotations

from dataclasses import dataclass

from augment_it.layout import filesystem
from augment_it.records import InputError
from augment_it.sources import SourceRead
from augment_it.sources.files.delimited import read_csv, read_tsv
from augment_it.sources.files.json_text import read_json, read_jsonl
from augment_it.sources.files.markdown import read_markdown
from augment_it.sources.files.parquet import read_parquet
from augment_it.sources.files.text import read_text, reject_invalid_text
from augment_it.sources.files.yaml_text import read_yaml


def open_file_source(uri: str) -> FileSource:
    fs, path = filesystem(uri)
    if not fs.exists(path):
        raise InputError(f"source {uri} does not exist")
    if fs.isdir(path):
        return FileSource(uri, "markdown")
    ext = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    kind = {"csv": "csv", "tsv": "tsv", "json": "json", "jsonl": "jsonl", "ndjson": "jsonl",
            "yaml": "yaml", "yml": "yaml", "parquet": "parquet", "pq": "parquet",
            "md": "markdown", "markdown": "markdown"}.get(ext)
    if kind is None:
        raise InputError(
            f"cannot tell the format of {uri}: use .csv, .tsv, .json, .jsonl, .yaml, .md, "
            ".parquet or a folder of Markdown files"
        )
    return FileSource(uri, kind)


@dataclass
class FileSource:
    uri: str
    kind: str

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]

    def read(self) -> SourceRead:
        if self.kind == "markdown":
            return read_markdown(self.uri)
        if self.kind == "parquet":
            return read_parquet(self.uri, self.name)
        text = read_text(self.uri)
        if not text.strip():
            raise InputError(f"source {self.uri} is empty: no header and no records")
        reader = {"csv": read_csv, "tsv": read_tsv, "json": read_json,
                  "jsonl": read_jsonl, "yaml": read_yaml}[self.kind]
        read = reader(text, self.name)
        reject_invalid_text(read)
        return read
