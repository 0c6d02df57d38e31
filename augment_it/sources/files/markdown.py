"""Markdown notes: one record per note, its front matter plus its text and path."""

from __future__ import annotations

from typing import Any

import frontmatter
from frontmatter.default_handlers import JSONHandler, YAMLHandler

from augment_it.layout import filesystem
from augment_it.records import InputError
from augment_it.sources import SourceRead
from augment_it.sources.files import visible
from augment_it.sources.files.documents import json_object, repeated_key
from augment_it.sources.files.text import decode, encoding_advice, invalid_text, printable
from augment_it.sources.files.yaml_text import load_yaml

NOTE_FIELDS = ("body", "file")  # set on every Markdown record from the note itself


def read_markdown(uri: str, encoding: str | None = None) -> SourceRead:
    fs, path = filesystem(uri)
    if fs.isdir(path):
        files = sorted(p for p in fs.find(path)
                       if p.lower().endswith((".md", ".markdown")) and visible(p[len(path):]))
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
            text = decode(raw, name, encoding)
        except InputError as exc:
            read.reject(row, name, str(exc))
            continue
        try:
            meta, body = _split_front_matter(text, name, encoding)
        except InputError as exc:
            read.reject(row, name, str(exc), raw=printable(text)[:2000])
            continue
        note = {**meta, "body": body, "file": name}
        if problem := invalid_text(note, encoding):
            read.reject(row, name, f"{name}: {problem}{encoding_advice(text, encoding)}",
                        raw=printable(text)[:2000])
            continue
        read.add(note, row, name)
    return read


def _split_front_matter(text: str, name: str, encoding: str | None) -> tuple[dict[str, Any], str]:
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
        documents = load_yaml(head, f"{name}: front matter", encoding, text)
        if len(documents) > 1:
            raise InputError(f"{name}: front matter holds {len(documents)} YAML documents, not one mapping")
        meta = documents[0] if documents else None
    else:
        # JSON front matter through the same hook as .json files, so a repeated key is seen.
        options = {"object_pairs_hook": json_object} if isinstance(handler, JSONHandler) else {}
        try:
            meta = handler.load(head, **options)
        except Exception as exc:  # TOML and JSON front matter raise their own error types
            raise InputError(f"{name}: front matter cannot be read: {exc}") from exc
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise InputError(f"{name}: front matter must be a mapping of fields, got {type(meta).__name__}")
    if repeated := repeated_key(meta):
        raise InputError(f"{name}: front matter {repeated}; rename or remove all but one")
    meta = {str(k): v for k, v in meta.items()}
    if clash := [k for k in NOTE_FIELDS if k in meta]:
        # `body` and `file` are the note's own text and path; overwriting either would lose data.
        raise InputError(f"{name}: front matter sets {' and '.join(repr(k) for k in clash)}, reserved "
                         "for the note's own text (body) and path (file); rename it in the front matter")
    return meta, body.strip()
