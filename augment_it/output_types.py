"""The types a template's output fields declare, read once into an OutputSpec.

    summary: string                   # also integer, number, boolean
    tags: list[string]                # a list of one of those
    founded: integer or null          # the model may say it does not know, rather than guess
    sentiment: [positive, negative]   # one of these labels
    topics: list[pricing, support]    # any of these labels

Each spec gives the JSON schema the provider is sent, the pydantic type an answer is validated
with, and the words the prompt names it in. A label matches whatever its case and surrounding
spaces, so an answer 'Positive' (or a reviewer's edit) takes the label 'positive'.

A field may be named as the column it is written to (`AI Summary`); the model is asked for it
under a key every provider takes (`answer_keys`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator

BASE_TYPES: dict[str, type] = {"string": str, "integer": int, "number": float, "boolean": bool}
UNKNOWN = " or null"  # after a type: null is an answer, meaning the model does not know
OutputKind = str | list[Any]  # as the template writes it: a type's name, or a list of labels


@dataclass(frozen=True)
class OutputSpec:
    base: str  # one of BASE_TYPES ("string" for labels)
    many: bool = False  # a list of values
    labels: tuple[str, ...] = ()  # each value is one of these
    nullable: bool = False

    @classmethod
    def parse(cls, field: str, kind: Any) -> OutputSpec:
        """The spec KIND declares for FIELD; ValueError naming the field when it declares none."""
        if isinstance(kind, list):  # YAML's null among the labels: an answer may be unknown
            labels = [label for label in kind if label is not None]
            return cls("string", labels=_checked_labels(field, labels), nullable=len(labels) < len(kind))
        text = kind.strip() if isinstance(kind, str) else ""
        nullable = text.endswith(UNKNOWN)
        text = text.removesuffix(UNKNOWN).strip()
        many = text.startswith("list[") and text.endswith("]")
        inner = text[5:-1].strip() if many else text
        if inner in BASE_TYPES:
            return cls(inner, many=many, nullable=nullable)
        if many and "," in inner:
            labels = [label.strip() for label in inner.split(",")]
            return cls("string", many=True, labels=_checked_labels(field, labels), nullable=nullable)
        names = ", ".join(BASE_TYPES)
        raise ValueError(f"field {field!r}: {kind!r} is no output type: use {names} or a list of one "
                         f"(list[string]), one of a list of labels ({field}: [positive, negative]) or "
                         f"any of them ({field}: list[pricing, support]), with 'or null' after it when "
                         f"the answer may be unknown ({field}: integer or null)")

    @property
    def python_type(self) -> Any:
        """What pydantic validates an answer's value with."""
        item: Any = BASE_TYPES[self.base]
        if self.labels:
            item = Annotated[Literal[self.labels], BeforeValidator(partial(matching_label, self.labels))]
        value = list[item] if self.many else item  # type: ignore[valid-type]
        if self.many and self.labels:
            # Models held to JSON but not to the schema (JSON mode) often write the labels as one
            # text, 'pricing, support'; and a label named twice ('Support', 'support') counts once.
            value = Annotated[value, BeforeValidator(_items_of_text), AfterValidator(_once_each)]
        return value | None if self.nullable else value

    def json_schema(self) -> dict[str, Any]:
        """The field's schema as providers take it (OpenAI's strict mode among them)."""
        item: dict[str, Any] = {"type": self.base}
        if self.labels:
            item["enum"] = list(self.labels)
        schema = {"type": "array", "items": item} if self.many else item
        if self.nullable:  # strict schemas require every field, so null stands for unknown
            schema["type"] = [schema["type"], "null"]
            if "enum" in schema:  # an enum without null would still rule it out
                schema["enum"] = [*schema["enum"], None]
        return schema

    def describe(self) -> str:
        """The type as the prompt names it."""
        plain = f"list[{self.base}]" if self.many else self.base
        text = self.choice() if self.labels else plain
        return f"{text}, or null if unknown" if self.nullable else text

    def choice(self) -> str:
        """The labels and how many of them a value takes."""
        return f"{'any' if self.many else 'one'} of: {', '.join(self.labels)}"


def output_specs(kinds: Mapping[str, OutputKind]) -> dict[str, OutputSpec]:
    """Each field's spec, from the types a template declares (KINDS)."""
    return {name: OutputSpec.parse(name, kind) for name, kind in kinds.items()}


# Anthropic refuses a tool's property keys outside `^[a-zA-Z0-9_.-]{1,64}$`; the others take this too.
ANSWER_KEY_LENGTH = 64
_NOT_IN_ANSWER_KEY = re.compile(r"[^A-Za-z0-9_-]+")


def answer_keys(names: Iterable[str]) -> dict[str, str]:
    """The key each output field NAME is asked for under in the model's JSON answer: the name itself
    where providers take it, else its letters and digits joined by `_` (`AI Summary` → `AI_Summary`,
    `Résumé (short)` → `Resume_short`). ValueError when two fields would get the same key."""
    keys: dict[str, str] = {}
    named: dict[str, str] = {}
    for name in names:
        key = name
        if _NOT_IN_ANSWER_KEY.search(name) or len(name) > ANSWER_KEY_LENGTH:
            ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
            key = _NOT_IN_ANSWER_KEY.sub("_", ascii_name).strip("_")[:ANSWER_KEY_LENGTH] or "field"
        if key in named:
            raise ValueError(f"output fields {named[key]!r} and {name!r} would both be asked of the model "
                             f"as {key!r}; rename one")
        keys[name], named[key] = key, name
    return keys


def matching_label(labels: tuple[str, ...], value: Any) -> Any:
    """The label VALUE names, but for case and surrounding spaces; VALUE itself when it names none."""
    if isinstance(value, str):
        folded = value.strip().casefold()
        for label in labels:
            if label.casefold() == folded:
                return label
    return value


def _items_of_text(value: Any) -> Any:
    return [item.strip() for item in value.split(",") if item.strip()] if isinstance(value, str) else value


def _once_each(labels: list[str]) -> list[str]:
    return list(dict.fromkeys(labels))


def _checked_labels(field: str, labels: list[Any]) -> tuple[str, ...]:
    """Labels an answer can be told apart by: text, two or more, none the same but for case."""
    seen: dict[str, str] = {}
    for label in labels:
        if not isinstance(label, str):
            written = [str(item).lower() if isinstance(item, bool) else str(item) for item in labels]
            raise ValueError(f"field {field!r}: label {label!r} is not text; quote the labels "
                             f"({field}: {written})")
        if not label.strip():
            raise ValueError(f"field {field!r} has an empty label")
        if (folded := label.strip().casefold()) in seen:
            raise ValueError(f"field {field!r} lists {seen[folded]!r} and {label!r}, which an "
                             "answer cannot tell apart")
        seen[folded] = label
    if len(seen) < 2:
        count = "one label only" if seen else "no labels"
        raise ValueError(f"field {field!r} lists {count}: an answer needs two or more to pick from")
    return tuple(label.strip() for label in labels)
