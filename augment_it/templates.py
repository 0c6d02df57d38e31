"""Prompt templates: a YAML file naming provider, model, prompt and the fields to add."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from functools import cached_property, partial
from typing import Annotated, Any, Literal, Self, get_args

import yaml
from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from augment_it.enrichers import ENRICHED_FIELDS
from augment_it.errors import UserInputError, yaml_error_text
from augment_it.records import PACKET_COLUMNS, REVIEW_COLUMNS, is_missing, user_fields
from augment_it.validation import FieldType

OutputType = Literal[
    "string", "integer", "number", "boolean",
    "list[string]", "list[integer]", "list[number]", "list[boolean]",
]
_PY_TYPES: dict[str, Any] = {
    "string": str, "integer": int, "number": float, "boolean": bool,
    "list[string]": list[str], "list[integer]": list[int],
    "list[number]": list[float], "list[boolean]": list[bool],
}
_JSON_TYPES: dict[str, dict[str, Any]] = {
    "string": {"type": "string"}, "integer": {"type": "integer"},
    "number": {"type": "number"}, "boolean": {"type": "boolean"},
}
# After an output type: the model may answer null when it does not know (`founded: integer or null`).
UNKNOWN = " or null"
# An output field's type: one of OutputType (or one with UNKNOWN after it), or the list of labels
# the answer must pick one of (`sentiment: [positive, negative, neutral]`).
OutputKind = str | list[str]

WRITTEN_BESIDE_ANSWERS = {"the built-in enrichers": ENRICHED_FIELDS, "the review": REVIEW_COLUMNS,
                          "the review sheet": PACKET_COLUMNS}
_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)


class TemplateError(UserInputError):
    """A template file that cannot be used at all."""


class RenderError(Exception):
    """One record that the template cannot be rendered for."""


class PromptTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    provider: str = "openai"
    model: str
    system: str | None = None
    prompt: str
    output: dict[str, OutputKind] | None = None
    input: dict[str, FieldType] | None = None  # fields records must have, with their types
    temperature: float | None = None
    top_p: float | None = None  # nucleus sampling; ranges per provider (providers.PROVIDERS)
    max_tokens: int = Field(1024, gt=0)
    rpm: float | None = Field(None, gt=0)  # the provider's requests-per-minute limit for this model
    tpm: float | None = Field(None, gt=0)  # and its tokens-per-minute limit
    version: str = ""  # filled from the file's content hash when loaded

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy whose changed fields are validated and whose derived values (compiled prompt,
        output model, `static_system`) are worked out again: pydantic's copy skips both, and
        would render the old prompt after a change of `prompt`."""
        if not update:
            return super().model_copy(deep=deep)
        return self.model_validate({**self.model_dump(), **update})

    @field_validator("output", mode="before")
    @classmethod
    def _output_kinds(cls, value: Any) -> Any:
        # Checked before pydantic's own errors, which name every member of the union once per field.
        for key, kind in (value.items() if isinstance(value, dict) else ()):
            if isinstance(kind, list):
                check_labels(str(key), kind)
            elif not isinstance(kind, str) or kind.removesuffix(UNKNOWN) not in get_args(OutputType):
                raise ValueError(f"field {key!r}: {kind!r} is no output type: use one of "
                                 f"{', '.join(get_args(OutputType))}, with 'or null' after it when the "
                                 f"answer may be unknown ({key}: integer or null), or a list of labels "
                                 f"for the answer to pick one of ({key}: [positive, negative, neutral])")
        return value

    @field_validator("output")
    @classmethod
    def _output_names(cls, value: dict[str, OutputKind] | None) -> dict[str, OutputKind] | None:
        for key in value or {}:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", key) or key.startswith("_"):
                raise ValueError(f"output field name {key!r} must be an identifier")
        return value

    @model_validator(mode="after")
    def _output_names_free(self) -> Self:
        # The answer would be overwritten after the call (enrichers, review), or would stand in
        # the review sheet's own column: an answer 'reject' under `decision` rejects the record.
        for key in self.output_fields:
            for owner, names in WRITTEN_BESIDE_ANSWERS.items():
                if key in names:
                    what = "output field name" if self.output else "the answer's field (the template's name)"
                    raise ValueError(f"{what} {key!r} is taken by {owner} ({', '.join(names)}); "
                                     f"name it otherwise, e.g. '{key}_ai'")
        return self

    @property
    def text_field(self) -> str:
        """The field holding a plain-text answer when the template declares no `output`."""
        return re.sub(r"\W", "_", self.name)

    @property
    def output_fields(self) -> dict[str, OutputKind]:
        return dict(self.output) if self.output else {self.text_field: "string"}

    @property
    def output_labels(self) -> dict[str, list[str]]:
        """The output fields whose answer is one of a list of labels, with those labels."""
        return {name: kind for name, kind in self.output_fields.items() if isinstance(kind, list)}

    @property
    def structured(self) -> bool:
        return bool(self.output)

    @cached_property
    def output_model(self) -> type[BaseModel]:
        fields = {name: (_python_type(kind), ...) for name, kind in self.output_fields.items()}
        return create_model(f"{self.text_field}_output", __config__=ConfigDict(extra="ignore"), **fields)

    def json_schema(self) -> dict[str, Any] | None:
        """A strict JSON schema for the output (what OpenAI's `json_schema` mode requires)."""
        if not self.output:
            return None
        properties = {name: _json_type(kind) for name, kind in self.output.items()}
        return {"type": "object", "properties": properties,
                "required": list(self.output), "additionalProperties": False}

    @cached_property
    def _compiled(self) -> tuple[Any, Any | None]:
        try:
            prompt = _ENV.from_string(self.prompt)
            system = _ENV.from_string(self.system) if self.system else None
        except TemplateSyntaxError as exc:
            raise TemplateError(f"template {self.name!r}: line {exc.lineno}: {exc.message}") from exc
        return prompt, system

    @cached_property  # asked once per record, by build_request: parse the system prompt once
    def static_system(self) -> bool:
        """Whether every record gets the same system prompt (it names no field): a provider's
        prompt cache can then serve it to every call after the first."""
        return not self.system or not meta.find_undeclared_variables(_ENV.parse(self.system))

    def render(self, record: dict[str, Any]) -> tuple[str | None, str]:
        """(system, prompt) for one record; a missing or empty field raises RenderError."""
        context = {k: v for k, v in user_fields(record).items() if not is_missing(v)}
        # Spreadsheet headers are seldom identifiers: {{ record["Company Name"] }} reaches them.
        context.setdefault("record", dict(context))
        prompt, system = self._compiled
        try:
            return (system.render(context) if system else None), prompt.render(context)
        except UndefinedError as exc:
            missing = re.search(r"'([^']+)' is undefined|has no attribute '([^']+)'", str(exc))
            if not missing:
                raise RenderError(f"template '{self.name}' needs {exc}, which this record lacks") from exc
            field = missing.group(1) or missing.group(2)
            # A column the record has but left empty (a blank cell, null) is not one it lacks.
            state = "is empty in this record" if field in record else "this record lacks"
            raise RenderError(f"template '{self.name}' needs field '{field}', which {state}") from exc
        except SecurityError as exc:
            raise RenderError(f"template '{self.name}' tried an unsafe operation: {exc}") from exc
        except Exception as exc:  # a filter or expression failing on this record's values
            raise RenderError(f"template '{self.name}' failed on this record: {exc}") from exc

    def parse_answer(self, text: str) -> dict[str, Any]:
        """The fields an answer fills; raises ValueError naming what is wrong."""
        if not self.structured:
            if not text.strip():  # kept as ok, it would be exported as an enrichment nobody made
                raise ValueError("the answer is empty")
            return {self.text_field: text.strip()}
        data = extract_json(text)
        try:
            parsed = self.output_model.model_validate(data)
        except ValidationError as exc:
            raise ValueError(f"answer does not match the output fields: {validation_problems(exc)}") from exc
        return parsed.model_dump()


def check_labels(field: str, labels: list[Any]) -> None:
    """Labels an answer can be told apart by: text, none empty, none the same but for case."""
    if not labels:
        raise ValueError(f"field {field!r} lists no labels")
    seen: dict[str, str] = {}
    for label in labels:
        if not isinstance(label, str):
            raise ValueError(f"field {field!r}: label {label!r} is not text; quote the labels "
                             f"({field}: ['1', '2', '3'])")
        if not label.strip():
            raise ValueError(f"field {field!r} has an empty label")
        if (folded := label.strip().casefold()) in seen:
            raise ValueError(f"field {field!r} lists {seen[folded]!r} and {label!r}, which an "
                             "answer cannot tell apart")
        seen[folded] = label


def type_text(kind: OutputKind) -> str:
    """The output type as the prompt writes it."""
    if isinstance(kind, list):
        return f"one of: {', '.join(kind)}"
    return f"{kind} if unknown" if kind.endswith(UNKNOWN) else kind


def matching_label(labels: list[str], value: Any) -> Any:
    """The label VALUE names, but for case and surrounding spaces (an answer 'Positive ' picks
    'positive'); VALUE itself when it names none."""
    if isinstance(value, str):
        folded = value.strip().casefold()
        for label in labels:
            if label.strip().casefold() == folded:
                return label
    return value


def _python_type(kind: OutputKind) -> Any:
    if isinstance(kind, list):
        return Annotated[Literal[tuple(kind)], BeforeValidator(partial(matching_label, kind))]
    base = _PY_TYPES[kind.removesuffix(UNKNOWN)]
    return base | None if kind.endswith(UNKNOWN) else base


def _json_type(kind: OutputKind) -> dict[str, Any]:
    if isinstance(kind, list):
        return {"type": "string", "enum": list(kind)}
    base = kind.removesuffix(UNKNOWN)
    schema = ({"type": "array", "items": _JSON_TYPES[base[5:-1]]} if base.startswith("list[")
              else dict(_JSON_TYPES[base]))
    if kind.endswith(UNKNOWN):  # strict schemas require every field, so null stands for unknown
        schema["type"] = [schema["type"], "null"]
    return schema


def extract_json(text: str) -> Any:
    """The JSON object in a model's answer, tolerating code fences and prose around it."""
    import json

    stripped = text.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", stripped, re.DOTALL)
    if fenced:
        stripped = fenced.group(1).strip()
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        start, end = stripped.find("{"), stripped.rfind("}")
        if 0 <= start < end:
            try:
                return json.loads(stripped[start:end + 1])
            except json.JSONDecodeError:
                pass
    raise ValueError(f"answer is not the JSON object asked for: {text[:200]!r}")


def load_template(path: str) -> PromptTemplate:
    from augment_it.layout import filesystem

    fs, fs_path = filesystem(path)
    if not fs.exists(fs_path):
        raise TemplateError(f"template file {path} does not exist")
    with fs.open(fs_path, "rb") as handle:
        raw = handle.read()
    return parse_template(raw.decode("utf-8"), origin=path)


def parse_template(text: str, origin: str = "<template>") -> PromptTemplate:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TemplateError(f"{origin}: not valid YAML: {yaml_error_text(exc)}") from exc
    if not isinstance(data, dict):
        raise TemplateError(f"{origin}: a template is a mapping with name, model and prompt")
    data.setdefault("version", hashlib.sha256(text.encode()).hexdigest()[:12])
    try:
        template = PromptTemplate.model_validate(data)
    except ValidationError as exc:
        raise TemplateError(f"{origin}: {validation_problems(exc)}") from exc
    template._compiled  # noqa: B018 - fail on syntax errors now, not per record
    return template


def validation_problems(exc: ValidationError) -> str:
    """Each problem as `field: message`; one about the whole template or answer as its message."""
    problems = [(".".join(map(str, e["loc"])), e["msg"].removeprefix("Value error, ")) for e in exc.errors()]
    return "; ".join(f"{where}: {message}" if where else message for where, message in problems)
