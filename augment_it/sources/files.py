"""File sources: CSV, TSV, JSON, JSONL, YAML, Markdown folders, Parquet.

- CSV: comma-separated unless the header line has no comma outside quotes and does have `;`, a
  tab or `|`, which is then the delimiter. Trailing unnamed header columns (Excel's `id,name,`)
  are dropped when every row leaves them empty. A row the csv module cannot parse is rejected
  with its line number and reading goes on with the next line.
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

import codecs
import csv
import io
import json
import re
import warnings
from collections import Counter, deque
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import Any

import frontmatter
import pyarrow.parquet as pq
import yaml
from frontmatter.default_handlers import JSONHandler, YAMLHandler

from augment_it.errors import InputNotice
from augment_it.layout import filesystem
from augment_it.records import ROW, InputError
from augment_it.sources import SOURCE, SourceRead

MAX_YAML_NODES = 1_000_000  # an alias bomb expands far past this; a real list of records does not
NOTE_FIELDS = ("body", "file")  # set on every Markdown record from the note itself
SNIFFED_DELIMITERS = ";\t|"
# Undecodable bytes become U+DC80..U+DCFF (surrogateescape); JSON can also spell lone surrogates.
# Neither can be stored as UTF-8, so a record holding one is quarantined.
_SURROGATE = re.compile("[\ud800-\udfff]")


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
        return _decode(handle.read(), uri)


# UTF-32's little-endian mark starts with UTF-16's, so it is looked for first.
_WIDE_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
              (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))


def _decode(raw: bytes, name: str) -> str:
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


def _bad_char(text: str, index: int) -> str:
    code = ord(text[index])
    if 0xDC80 <= code <= 0xDCFF:
        return f"byte 0x{code - 0xDC00:02x}"
    return f"lone surrogate \\u{code:04x}"


def _surrogate_in(value: Any, path: str) -> tuple[str, str, int] | None:
    """(where, text, index) of the first undecodable character in a value, nested ones too."""
    if isinstance(value, str):
        found = _SURROGATE.search(value)
        return (path, value, found.start()) if found else None
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and (found := _SURROGATE.search(key)):
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
        if isinstance(key, str) and (found := _SURROGATE.search(key)):
            return (f"field name '{_printable(key)}' is not valid UTF-8 "
                    f"({_bad_char(key, found.start())} at char {found.start()})")
        hit = _surrogate_in(value, str(key))
        if hit is not None:
            where, text, index = hit
            at = f"char {index}" if where == key else f"{where} char {index}"
            return f"field '{key}' is not valid UTF-8 ({_bad_char(text, index)} at {at})"
    return None


def _reject_invalid_text(read: SourceRead) -> None:
    kept = []
    for record in read.records:
        problem = _invalid_field(record)
        if problem is None:
            kept.append(record)
        else:
            read.reject(record[ROW], record[SOURCE], f"{record[SOURCE]}: {problem}",
                        raw=json.dumps(_printable(record), default=str, ensure_ascii=False))
    read.records = kept


def _printable(value: Any) -> Any:
    """The value with every undecodable character (in keys and nested values too) as U+FFFD."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_printable(k): _printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_printable(v) for v in value]
    return value


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
    """`,` unless the header line has none outside quotes but has `;`, a tab or `|`."""
    header = re.sub(r'"[^"]*"', "", text.split("\n", 1)[0])
    if "," in header:
        return ","
    counts = {d: header.count(d) for d in SNIFFED_DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _read_delimited(text: str, name: str, delimiter: str) -> SourceRead:
    read = SourceRead()
    # A field cannot be longer than the file, so this limit never cuts a field (the default 128 KiB
    # would), and it is only ever raised.
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    lines = _Lines(text)
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except csv.Error as exc:
        raise InputError(f"{name}: the header row cannot be parsed: {exc}") from exc
    header = [h.strip() for h in header]
    for position, column in enumerate(header, start=1):
        if found := _SURROGATE.search(column):
            # Every record would carry the broken name; one clear sentence beats a quarantined file.
            raise InputError(f"{name}: header column {position} ('{_printable(column)}') is not valid "
                             f"UTF-8 ({_bad_char(column, found.start())}); save the file as UTF-8")
    width = len(header)
    while width and not header[width - 1]:
        width -= 1  # trailing unnamed columns, dropped below if every row leaves them empty
    named = header[:width]
    if len(set(named)) != len(named) or any(not h for h in named) or not named:
        raise InputError(f"{name}: header has empty or repeated column names: {header}")
    row = 1
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
                        raw=_printable("".join(taken))[:2000])
            continue
        row += 1
        if not values:
            continue  # blank line
        where = f"{name}:{start_line}"
        if width < len(values) <= len(header):
            if any(v.strip() for v in values[width:]):
                raise InputError(f"{name}: header has empty column names but line {start_line} has "
                                 f"values under them: {header}")
            values = values[:width]
        if len(values) != width:
            read.reject(row, where, f"{where}: row has {len(values)} fields, the header has "
                        f"{width} ({', '.join(named)})", raw=_printable(delimiter.join(values)))
            continue
        read.add({h: (v if v != "" else None) for h, v in zip(named, values, strict=True)}, row, where)
    if width < len(header):
        warnings.warn(f"{name}: dropped {len(header) - width} unnamed column(s) at the end of the header, "
                      "empty in every row", InputNotice, stacklevel=3)
    return read


def _read_csv(text: str, name: str) -> SourceRead:
    return _read_delimited(text, name, _sniff_delimiter(text))


def _read_tsv(text: str, name: str) -> SourceRead:
    return _read_delimited(text, name, "\t")


class _RepeatedKeys(dict):
    """A parsed object in which a key appears more than once: the dict holds the last value, as
    json and PyYAML give it; `pairs` holds every (key, value) as written."""

    pairs: list[tuple[Any, Any]]


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's object_pairs_hook: a plain dict, or a _RepeatedKeys when a key repeats."""
    fields = dict(pairs)
    if len(fields) == len(pairs):
        return fields
    repeated = _RepeatedKeys(fields)
    repeated.pairs = pairs
    return repeated


def _repeated_key(value: Any, parent: str = "") -> str | None:
    """The first key given more than once, nested ones too, as "field 'a.b' appears N times"
    (`parent` is the path down to `value`).

    Keys compare as read (YAML's `1` and `true` are one dict key) and as the text they are
    stored under (YAML's `1` and `'1'` become one field name)."""
    if isinstance(value, dict):
        # A plain dict of text keys (every JSON object without a repeat) cannot repeat one: the
        # counting is for the objects json marked and for YAML's non-text keys.
        if isinstance(value, _RepeatedKeys) or not all(type(k) is str for k in value):
            keys = [k for k, _ in value.pairs] if isinstance(value, _RepeatedKeys) else list(value)
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
                    found := _repeated_key(item, f"{parent}{'.' if parent else ''}{key}")):
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, dict | list) and (found := _repeated_key(item, f"{parent}[{index}]")):
                return found
    return None


def _as_written(value: Any) -> str:
    """A parsed value as JSON text, with every pair of an object whose key repeats."""
    if isinstance(value, dict):
        pairs = value.pairs if isinstance(value, _RepeatedKeys) else value.items()
        return "{" + ", ".join(f"{json.dumps(str(k), ensure_ascii=False)}: {_as_written(v)}"
                               for k, v in pairs) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(map(_as_written, value)) + "]"
    return json.dumps(value, default=str, ensure_ascii=False)


def _add_mapping(read: SourceRead, item: Any, row: int, where: str, line: str | None = None) -> None:
    """Keep a parsed object as a record; reject anything else, or an object with a repeated key,
    keeping `line` (the text it was parsed from) or else the value as JSON text."""
    if not isinstance(item, dict):
        problem = f"expected an object of fields, got {type(item).__name__}"
    elif repeated := _repeated_key(item):
        problem = f"{repeated}; rename or remove all but one"
    else:
        read.add({str(k): v for k, v in item.items()}, row, where)
        return
    read.reject(row, where, f"{where}: {problem}", raw=_printable(line or _as_written(item))[:2000])


def _read_json(text: str, name: str) -> SourceRead:
    try:
        data = json.loads(text, object_pairs_hook=_json_object)
    except json.JSONDecodeError as exc:
        raise InputError(f"{name}: not valid JSON (line {exc.lineno}, column {exc.colno}: "
                         f"{exc.msg}); use .jsonl for one record per line") from exc
    read = SourceRead()
    _add_items(read, data, name, "a JSON array of objects")
    return read


def _read_jsonl(text: str, name: str) -> SourceRead:
    read = SourceRead()
    row = 0
    # Only "\n" ends a line: str.splitlines() would also split at U+2028, U+0085, \x0b, \x0c or
    # \x1c-\x1e, which JSON allows raw inside strings.
    for line_no, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        row += 1
        where = f"{name}:{line_no}"
        try:
            item = json.loads(line, object_pairs_hook=_json_object)
        except json.JSONDecodeError as exc:
            read.reject(row, where, f"{where}: not valid JSON ({exc.msg} at column {exc.colno})",
                        raw=_printable(line)[:2000])
            continue
        _add_mapping(read, item, row, where, line)
    return read


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema scalars, refusing aliases that expand past
    MAX_YAML_NODES nodes.

    YAML 1.1 (PyYAML's default) reads `NO`, `on` and `yes` as booleans, `01234` as octal, `1:30`
    as sexagesimal and dates as timestamps; in records these are country codes, zip codes and
    text, so only `true`/`false`, decimal ints without leading zeros, `0o` octal and decimal
    floats are resolved, and everything else stays the string it was written as.
    """

    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag.rsplit(":", 1)[-1] in ("null", "merge")]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_yaml_map(self, node: yaml.MappingNode) -> Iterator[dict[Any, Any]]:
        """A mapping as json's object_pairs_hook gives it: a _RepeatedKeys when a key is written
        twice (PyYAML keeps the last value silently). A key merged in by `<<` and set again is
        YAML's override, not a repeat."""
        written = [(k, v) for k, v in node.value if k.tag != "tag:yaml.org,2002:merge"]
        keys = [self.construct_object(k) for k, _ in written]  # mostly scalars; built once, cached
        hashable = [k for k in keys if isinstance(k, Hashable)]  # an unhashable one fails below
        if len(set(hashable)) == len(hashable):
            yield from super().construct_yaml_map(node)
            return
        data = _RepeatedKeys()
        yield data  # before the values, as PyYAML does, so an alias inside can refer to it
        data.update(self.construct_mapping(node))
        data.pairs = [(key, self.construct_object(v)) for key, (_, v) in zip(keys, written, strict=True)]


_BoundedLoader.add_constructor("tag:yaml.org,2002:map", _BoundedLoader.construct_yaml_map)
_BoundedLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_BoundedLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?(?:0|[1-9][0-9]*)|0o[0-7]+)$"), list("-+0123456789"))
_BoundedLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:(?:0|[1-9][0-9]*)\.[0-9]*(?:[eE][-+]?[0-9]+)?
                    |(?:0|[1-9][0-9]*)[eE][-+]?[0-9]+
                    |\.[0-9]+(?:[eE][-+]?[0-9]+)?
                    |\.(?:inf|Inf|INF))
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


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


def _load_yaml(text: str, subject: str) -> list[Any]:
    """Every document in the text (most files have one), each checked for alias bombs."""
    if found := _SURROGATE.search(text):
        # PyYAML refuses the character anyway; say which line, in words a user can act on.
        line = text.count("\n", 0, found.start()) + 1
        raise InputError(f"{subject} is not valid UTF-8 ({_bad_char(text, found.start())} on line "
                         f"{line}); save the file as UTF-8")
    loader = _BoundedLoader(text)
    documents = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if _expanded_size(node, {}) > MAX_YAML_NODES:
                raise InputError(f"{subject} expands to more than {MAX_YAML_NODES:,} YAML nodes "
                                 "through aliases (an alias bomb?); refusing to load it")
            documents.append(loader.construct_document(node))
    except yaml.YAMLError as exc:
        raise InputError(f"{subject} is not valid YAML: {exc}") from exc
    finally:
        loader.dispose()
    return documents


def _read_yaml(text: str, name: str) -> SourceRead:
    documents = [d for d in _load_yaml(text, name) if d is not None]
    if not documents:
        raise InputError(f"{name}: expected a YAML list of mappings, the file holds only comments")
    read = SourceRead()
    if len(documents) == 1:
        _add_items(read, documents[0], name, "a YAML list of mappings")
        return read
    # `---` separated documents: each a list of records, a wrapper, or one record.
    for number, document in enumerate(documents, start=1):
        _add_items(read, document, f"{name} document {number}", "a YAML list of mappings", document=True)
    return read


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


def _add_items(read: SourceRead, data: Any, where: str, expected: str, *, document: bool = False) -> None:
    """Records from one parsed document: a list of mappings, a mapping wrapping one, or one mapping
    (named `where` when it is one of several YAML documents, `where[0]` when it is the file)."""
    if isinstance(data, dict) and (wrapped := _records_list(data, where)):
        if isinstance(data, _RepeatedKeys) and (times := [k for k, _ in data.pairs].count(wrapped[0])) > 1:
            raise InputError(f"{where}: key '{wrapped[0]}' appears {times} times; the records under all "
                             "but the last would be lost")
        where, data = f"{where}[{json.dumps(str(wrapped[0]), ensure_ascii=False)}]", wrapped[1]
    elif document and not isinstance(data, list):
        _add_mapping(read, data, len(read.records) + len(read.rejects) + 1, where)  # rejects a scalar
        return
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise InputError(f"{where}: expected {expected}, got {type(data).__name__}")
    for index, item in enumerate(data):
        _add_mapping(read, item, len(read.records) + len(read.rejects) + 1, f"{where}[{index}]")


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
            raw = handle.read()
        try:
            text = _decode(raw, name)
        except InputError as exc:
            read.reject(row, name, str(exc))
            continue
        try:
            meta, body = _split_front_matter(text, name)
        except InputError as exc:
            read.reject(row, name, str(exc), raw=_printable(text)[:2000])
            continue
        read.add({**meta, "body": body, "file": name}, row, name)
    _reject_invalid_text(read)
    return read


def _split_front_matter(text: str, name: str) -> tuple[dict[str, Any], str]:
    if not text.strip():
        raise InputError(f"{name}: the file is empty")
    handler = frontmatter.detect_format(text, frontmatter.handlers)
    if handler is None:
        if text.lstrip().startswith("---") and text.count("---") < 2:
            raise InputError(f"{name}: front matter opened with '---' is never closed")
        return {}, text.strip()
    try:
        head, body = handler.split(text)
    except ValueError as exc:  # a single delimiter line
        raise InputError(f"{name}: front matter opened with '{handler.START_DELIMITER}' is never "
                         "closed") from exc
    if isinstance(handler, YAMLHandler):
        # Our loader, not python-frontmatter's: YAML 1.2 scalars, alias-bomb check, and a list
        # is reported instead of dropped.
        documents = _load_yaml(head, f"{name}: front matter")
        if len(documents) > 1:
            raise InputError(f"{name}: front matter holds {len(documents)} YAML documents, not one mapping")
        meta = documents[0] if documents else None
    else:
        # JSON front matter through the same hook as .json files, so a repeated key is seen.
        options = {"object_pairs_hook": _json_object} if isinstance(handler, JSONHandler) else {}
        try:
            meta = handler.load(head, **options)
        except Exception as exc:  # TOML and JSON front matter raise their own error types
            raise InputError(f"{name}: front matter cannot be read: {exc}") from exc
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise InputError(f"{name}: front matter must be a mapping of fields, got {type(meta).__name__}")
    if repeated := _repeated_key(meta):
        raise InputError(f"{name}: front matter {repeated}; rename or remove all but one")
    meta = {str(k): v for k, v in meta.items()}
    if clash := [k for k in NOTE_FIELDS if k in meta]:
        # `body` and `file` are the note's own text and path; overwriting either would lose data.
        raise InputError(f"{name}: front matter sets {' and '.join(repr(k) for k in clash)}, reserved "
                         "for the note's own text (body) and path (file); rename it in the front matter")
    return meta, body.strip()


def _read_parquet(uri: str, name: str) -> SourceRead:
    fs, path = filesystem(uri)
    try:
        with fs.open(path, "rb") as handle:
            # Python objects, not a pandas frame: int64 columns with nulls would become float64
            # there (ids "1.0", and 2**53 + 1 rounded). No Arrow threads: with them the process
            # sometimes aborts at exit ("terminate called without an active exception",
            # apache/arrow#34314), and a source file is read once.
            rows = pq.read_table(handle, use_threads=False, pre_buffer=False).to_pylist()
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise InputError(f"{name}: not a readable Parquet file: {exc}") from exc
    read = SourceRead()
    for row, record in enumerate(rows, start=1):
        read.add(record, row, f"{name}[{row - 1}]")
    return read
