"""YAML files, read with YAML 1.2's core scalars and a bound on what aliases expand to."""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Any

import yaml

from augment_it.errors import yaml_error_text
from augment_it.records import InputError
from augment_it.sources import SourceRead
from augment_it.sources.files.documents import RepeatedKeys, add_items
from augment_it.sources.files.text import SURROGATE, bad_char, refusal_advice
from augment_it.yaml_core import CoreLoader

MAX_YAML_NODES = 1_000_000  # an alias bomb expands far past this; a real list of records does not


class _BoundedLoader(CoreLoader):
    """CoreLoader (YAML 1.2 core-schema scalars) refusing aliases that expand past MAX_YAML_NODES
    nodes, and telling a key written twice."""

    def construct_yaml_map(self, node: yaml.MappingNode) -> Iterator[dict[Any, Any]]:
        """A mapping as json's object_pairs_hook gives it: a RepeatedKeys when a key is written
        twice (PyYAML keeps the last value silently). A key merged in by `<<` and set again is
        YAML's override, not a repeat."""
        written = [(k, v) for k, v in node.value if k.tag != "tag:yaml.org,2002:merge"]
        keys = [self.construct_object(k) for k, _ in written]  # mostly scalars; built once, cached
        hashable = [k for k in keys if isinstance(k, Hashable)]  # an unhashable one fails below
        if len(set(hashable)) == len(hashable):
            yield from super().construct_yaml_map(node)
            return
        data = RepeatedKeys()
        yield data  # before the values, as PyYAML does, so an alias inside can refer to it
        data.update(self.construct_mapping(node))
        data.pairs = [(key, self.construct_object(v)) for key, (_, v) in zip(keys, written, strict=True)]


_BoundedLoader.add_constructor("tag:yaml.org,2002:map", _BoundedLoader.construct_yaml_map)


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


def load_yaml(text: str, subject: str, encoding: str | None = None,
              file_text: str | None = None) -> list[Any]:
    """Every document in the text (most files have one), each checked for alias bombs. TEXT was
    decoded from ENCODING (UTF-8 if None), as part of FILE_TEXT if it is only a part."""
    if found := SURROGATE.search(text):
        # PyYAML refuses the character anyway; say which line, in words a user can act on.
        line = text.count("\n", 0, found.start()) + 1
        raise InputError(f"{subject} is not valid {encoding or 'UTF-8'} ({bad_char(text, found.start())} on "
                         f"line {line})" + refusal_advice(file_text or text, encoding))
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
        raise InputError(f"{subject} is not valid YAML: {yaml_error_text(exc)}") from exc
    finally:
        loader.dispose()
    return documents


def read_yaml(text: str, name: str, encoding: str | None = None) -> SourceRead:
    documents = [d for d in load_yaml(text, name, encoding) if d is not None]
    if not documents:
        raise InputError(f"{name}: expected a YAML list of mappings, the file holds only comments")
    read = SourceRead()
    if len(documents) == 1:
        add_items(read, documents[0], name, "a YAML list of mappings")
        return read
    # `---` separated documents: each a list of records, a wrapper, or one record.
    for number, document in enumerate(documents, start=1):
        add_items(read, document, f"{name} document {number}", "a YAML list of mappings", document=True)
    return read
