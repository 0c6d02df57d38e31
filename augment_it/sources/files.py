"""File sources: CSV, JSON (array), JSONL, YAML (list of mappings), Markdown folders, Parquet."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any

import frontmatter
import pandas as pd
import yaml

from augment_it.layout import filesystem
from augment_it.records import ROW, InputError
from augment_it.sources import SOURCE, SourceRead

MAX_YAML_NODES = 1_000_000  # an alias bomb expands far past this; a real list of records does not


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
            return _read_markdown(self.uri)
        if self.kind == "parquet":
            return _read_parquet(self.uri, self.name)
        text = _read_text(self.uri)
        if not text.strip():
            raise InputError(f"source {self.uri} is empty: no header and no records")
        reader = {"csv": _read_csv, "tsv": _read_tsv, "json": _read_json,
                  "jsonl": _read_jsonl, "yaml": _read_yaml}[self.kind]
        read = reader(text, self.name)
        _reject_invalid_text(read)
        return read


def _read_text(uri: str) -> str:
    fs, path = filesystem(uri)
    with fs.open(path, "rb") as handle:
        raw = handle.read()
    # Undecodable bytes survive as lone surrogates, so the record holding them can be named and
    # quarantined instead of failing the whole file.
    return raw.decode("utf-8-sig", errors="surrogateescape")


def _invalid_field(record: dict[str, Any]) -> str | None:
    for key, value in record.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        for index, char in enumerate(text):
            if "\udc80" <= char <= "\udcff":
                return f"field '{key}' is not valid UTF-8 (byte 0x{ord(char) - 0xDC00:02x} at char {index})"
        if isinstance(key, str) and any("\udc80" <= c <= "\udcff" for c in key):
            return "a field name is not valid UTF-8"
    return None


def _reject_invalid_text(read: SourceRead) -> None:
    kept = []
    for record in read.records:
        problem = _invalid_field(record)
        if problem is None:
            kept.append(record)
        else:
            safe = {k: _printable(v) for k, v in record.items()}
            read.reject(record[ROW], record[SOURCE], f"{record[SOURCE]}: {problem}",
                        raw=json.dumps(safe, default=str, ensure_ascii=False))
    read.records = kept


def _printable(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return value


def _read_delimited(text: str, name: str, delimiter: str) -> SourceRead:
    read = SourceRead()
    lines = io.StringIO(text, newline="")
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except csv.Error as exc:
        raise InputError(f"{name}: the header row cannot be parsed: {exc}") from exc
    header = [h.strip() for h in header]
    if len(set(header)) != len(header) or any(not h for h in header):
        raise InputError(f"{name}: header has empty or repeated column names: {header}")
    row = 1
    while True:
        start_line = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            row += 1
            rest = text.splitlines()[start_line - 1:]
            read.reject(row, f"{name}:{start_line}", f"{name} line {start_line}: {exc}",
                        raw="\n".join(rest)[:2000])
            break
        row += 1
        if not values:
            continue  # blank line
        where = f"{name}:{start_line}"
        if len(values) != len(header):
            read.reject(row, where, f"{where}: row has {len(values)} fields, the header has "
                        f"{len(header)} ({', '.join(header)})", raw=delimiter.join(values))
            continue
        record: dict[str, Any] = {h: (v if v != "" else None) for h, v in zip(header, values, strict=True)}
        record[ROW] = row
        record[SOURCE] = where
        read.records.append(record)
    return read


def _read_csv(text: str, name: str) -> SourceRead:
    return _read_delimited(text, name, ",")


def _read_tsv(text: str, name: str) -> SourceRead:
    return _read_delimited(text, name, "\t")


def _add_mapping(read: SourceRead, item: Any, row: int, where: str) -> None:
    if isinstance(item, dict):
        read.records.append({**{str(k): v for k, v in item.items()}, ROW: row, SOURCE: where})
    else:
        read.reject(row, where, f"{where}: expected an object of fields, got {type(item).__name__}",
                    raw=json.dumps(item, default=str)[:2000])


def _read_json(text: str, name: str) -> SourceRead:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{name}: not valid JSON (line {exc.lineno}, column {exc.colno}: "
                         f"{exc.msg}); use .jsonl for one record per line") from exc
    return _read_items(data, name, "a JSON array of objects")


def _read_jsonl(text: str, name: str) -> SourceRead:
    read = SourceRead()
    row = 0
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        row += 1
        where = f"{name}:{line_no}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            read.reject(row, where, f"{where}: not valid JSON ({exc.msg} at column {exc.colno})",
                        raw=_printable(line)[:2000])
            continue
        _add_mapping(read, item, row, where)
    return read


class _BoundedLoader(yaml.SafeLoader):
    """safe_load that refuses documents whose aliases expand past MAX_YAML_NODES nodes."""


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = 1  # guards against recursive aliases
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    memo[key] = min(size, MAX_YAML_NODES + 1)
    return memo[key]


def _load_yaml(text: str, name: str) -> Any:
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_YAML_NODES:
            raise InputError(f"{name}: YAML expands to more than {MAX_YAML_NODES:,} nodes "
                             "through aliases (an alias bomb?); refusing to load it")
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise InputError(f"{name}: not valid YAML: {exc}") from exc
    finally:
        loader.dispose()


def _read_yaml(text: str, name: str) -> SourceRead:
    return _read_items(_load_yaml(text, name), name, "a YAML list of mappings")


def _read_items(data: Any, name: str, expected: str) -> SourceRead:
    """Records from a parsed document: a list of mappings, or one mapping alone."""
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise InputError(f"{name}: expected {expected}, got {type(data).__name__}")
    read = SourceRead()
    for index, item in enumerate(data, start=1):
        _add_mapping(read, item, index, f"{name}[{index - 1}]")
    return read


def _read_markdown(uri: str) -> SourceRead:
    fs, path = filesystem(uri)
    if fs.isdir(path):
        files = sorted(p for p in fs.find(path) if p.lower().endswith((".md", ".markdown")))
        base = path.rstrip("/") + "/"
    else:
        files, base = [path], path.rsplit("/", 1)[0] + "/"
    if not files:
        raise InputError(f"{uri}: no Markdown files (*.md) found")
    read = SourceRead()
    for row, file_path in enumerate(files, start=1):
        name = file_path[len(base):] if file_path.startswith(base) else file_path
        with fs.open(file_path, "rb") as handle:
            text = handle.read().decode("utf-8-sig", errors="surrogateescape")
        try:
            meta, body = _split_front_matter(text, name)
        except InputError as exc:
            read.reject(row, name, str(exc), raw=_printable(text)[:2000])
            continue
        read.records.append({**meta, "body": body, "file": name, ROW: row, SOURCE: name})
    _reject_invalid_text(read)
    return read


def _split_front_matter(text: str, name: str) -> tuple[dict[str, Any], str]:
    if not text.strip():
        raise InputError(f"{name}: the file is empty")
    try:
        post = frontmatter.loads(text)
    except yaml.YAMLError as exc:
        raise InputError(f"{name}: front matter is not valid YAML: {exc}") from exc
    except Exception as exc:  # python-frontmatter raises plain ValueErrors for odd delimiters
        raise InputError(f"{name}: front matter cannot be read: {exc}") from exc
    if text.lstrip().startswith("---") and not post.metadata and text.count("---") < 2:
        raise InputError(f"{name}: front matter opened with '---' is never closed")
    if not isinstance(post.metadata, dict):
        raise InputError(f"{name}: front matter must be a mapping of fields")
    return dict(post.metadata), post.content


def _read_parquet(uri: str, name: str) -> SourceRead:
    fs, path = filesystem(uri)
    try:
        with fs.open(path, "rb") as handle:
            frame = pd.read_parquet(handle)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise InputError(f"{name}: not a readable Parquet file: {exc}") from exc
    read = SourceRead()
    for row, record in enumerate(frame.to_dict(orient="records"), start=1):
        read.records.append({**record, ROW: row, SOURCE: f"{name}[{row - 1}]"})
    return read
