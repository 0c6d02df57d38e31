"""Prompt templates: a YAML file naming provider, model, prompt and the fields to add."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from functools import cached_property
from typing import Any, Self, cast, get_args

import yaml
from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from augment_it.enrichers import ENRICHED_FIELDS
from augment_it.errors import UserInputError, yaml_error_text
from augment_it.output_types import UNKNOWN, OutputKind, OutputSpec, answer_keys, output_specs
from augment_it.records import PACKET_COLUMNS, REVIEW_COLUMNS, is_missing, user_fields
from augment_it.validation import FieldType
from augment_it.yaml_core import CoreLoader

WRITTEN_BESIDE_ANSWERS = {"the built-in enrichers": ENRICHED_FIELDS, "the review": REVIEW_COLUMNS,
                          "the review sheet": PACKET_COLUMNS}
_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)


class TemplateError(UserInputError):
    """A template file that cannot be used at all."""


class RenderError(Exception):
    """One record that the template cannot be rendered for."""


class Example(BaseModel):
    """A record and the answer it should get, shown to the model before each record (few-shot)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    record: dict[str, Any]
    answer: dict[str, Any] | str  # the output fields' values; text for a template without `output`


class PromptTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    provider: str = "openai"
    model: str
    system: str | None = None
    prompt: str
    output: dict[str, OutputKind] | None = None
    # Fields records must have, with their types; one followed by 'or null' may be empty.
    input: dict[str, str] | None = None
    temperature: float | None = None
    top_p: float | None = None  # nucleus sampling; ranges per provider (providers.PROVIDERS)
    max_tokens: int = Field(1024, gt=0)
    rpm: float | None = Field(None, gt=0)  # the provider's requests-per-minute limit for this model
    tpm: float | None = Field(None, gt=0)  # and its tokens-per-minute limit
    examples: list[Example] = Field(default_factory=list)
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
        # Read before pydantic's own checks, which would name every shape a type can take.
        for key, kind in (value.items() if isinstance(value, dict) else ()):
            OutputSpec.parse(str(key), kind)
        return value

    @field_validator("input")
    @classmethod
    def _input_kinds(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for key, kind in (value or {}).items():
            if kind.removesuffix(UNKNOWN) not in get_args(FieldType):
                raise ValueError(f"field {key!r}: {kind!r} is no input type: use "
                                 f"{', '.join(get_args(FieldType))}, with 'or null' after it when a "
                                 f"record may leave the field empty ({key}: url or null)")
        return value

    @field_validator("output")
    @classmethod
    def _output_names(cls, value: dict[str, OutputKind] | None) -> dict[str, OutputKind] | None:
        for key in value or {}:
            if not key.strip() or key != key.strip():
                raise ValueError(f"output field name {key!r} is empty or starts or ends with a space")
            if key.startswith("_"):  # augment-it's own columns (records.SYSTEM_COLUMNS) start so
                raise ValueError(f"output field name {key!r} must not start with '_'")
        answer_keys(value or {})
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
    def input_types(self) -> dict[str, FieldType]:
        """The type of each input field (checked where a record has a value)."""
        inputs = self.input or {}
        return {name: cast(FieldType, kind.removesuffix(UNKNOWN)) for name, kind in inputs.items()}

    @property
    def required_inputs(self) -> list[str]:
        """The input fields a record must have a value in."""
        return [name for name, kind in (self.input or {}).items() if not kind.endswith(UNKNOWN)]

    @property
    def text_field(self) -> str:
        """The field holding a plain-text answer when the template declares no `output`."""
        return re.sub(r"\W", "_", self.name)

    @property
    def output_fields(self) -> dict[str, OutputKind]:
        return dict(self.output) if self.output else {self.text_field: "string"}

    @cached_property
    def output_specs(self) -> dict[str, OutputSpec]:
        return output_specs(self.output_fields)

    @property
    def structured(self) -> bool:
        return bool(self.output)

    @cached_property
    def answer_keys(self) -> dict[str, str]:
        """Each output field's key in the model's JSON answer (`AI Summary` is asked as `AI_Summary`)."""
        return answer_keys(self.output_fields)

    @cached_property
    def output_model(self) -> type[BaseModel]:
        """Validates an answer; it reads each field under its answer key, or under its own name (an
        example's answer, written by the user), and dumps it `by_alias` under its own name."""
        fields = {f"field_{number}": (spec.python_type, Field(
                      validation_alias=AliasChoices(self.answer_keys[name], name), serialization_alias=name))
                  for number, (name, spec) in enumerate(self.output_specs.items())}
        return create_model(f"{self.text_field}_output", __config__=ConfigDict(extra="ignore"), **fields)

    def json_schema(self) -> dict[str, Any] | None:
        """A strict JSON schema for the output (what OpenAI's `json_schema` mode requires)."""
        if not self.output:
            return None
        properties = {self.answer_keys[name]: spec.json_schema() for name, spec in self.output_specs.items()}
        return {"type": "object", "properties": properties,
                "required": list(properties), "additionalProperties": False}

    @cached_property
    def _compiled(self) -> tuple[Any, Any | None]:
        try:
            prompt = _ENV.from_string(self.prompt)
            system = _ENV.from_string(self.system) if self.system else None
        except TemplateSyntaxError as exc:
            raise TemplateError(f"template {self.name!r}: line {exc.lineno}: {exc.message}") from exc
        return prompt, system

    @cached_property
    def example_turns(self) -> tuple[tuple[str, str], ...]:
        """Each example as the user turn its record renders to and the assistant turn answering it,
        the answer as the model is asked to give it (a JSON object of the output fields)."""
        turns: list[tuple[str, str]] = []
        for number, example in enumerate(self.examples, 1):
            try:
                if isinstance(example.answer, dict) and not self.structured:
                    raise ValueError("the answer is a mapping, but the template declares no output fields")
                answer = example.answer if isinstance(example.answer, str) else json.dumps(example.answer)
                fields = self.parse_answer(answer)
                _, prompt = self.render(example.record)
            except (RenderError, ValueError) as exc:
                problem = str(exc).removeprefix(f"template '{self.name}' ")
                raise TemplateError(f"template {self.name!r}, example {number}: {problem}") from exc
            turns += [("user", prompt), ("assistant", self.answer_text(fields))]
        return tuple(turns)

    def answer_text(self, fields: dict[str, Any]) -> str:
        """An answer's output FIELDS as the model is asked to give them (a JSON object of them, or
        the text of a template without output fields)."""
        if not self.structured:
            return str(fields.get(self.text_field) or "")
        keyed = {self.answer_keys.get(name, name): value for name, value in fields.items()}
        return json.dumps(keyed, ensure_ascii=False, default=str)

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
        return parsed.model_dump(by_alias=True)


def extract_json(text: str) -> Any:
    """The JSON object in a model's answer, tolerating code fences and prose around it."""

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
        data = yaml.load(text, Loader=CoreLoader)  # a SafeLoader: [yes, no] are labels, not booleans
    except yaml.YAMLError as exc:
        # `output: {tags: list[string]}`: brackets end a value inside braces, as YAML's inline style has it.
        inline = "flow" in str(getattr(exc, "context", "")) and "got '['" in str(getattr(exc, "problem", ""))
        hint = "; inside {...}, quote a value with brackets: \"list[string]\"" if inline else ""
        raise TemplateError(f"{origin}: not valid YAML: {yaml_error_text(exc)}{hint}") from exc
    if not isinstance(data, dict):
        raise TemplateError(f"{origin}: a template is a mapping with name, model and prompt")
    data.setdefault("version", hashlib.sha256(text.encode()).hexdigest()[:12])
    try:
        template = PromptTemplate.model_validate(data)
    except ValidationError as exc:
        raise TemplateError(f"{origin}: {validation_problems(exc)}") from exc
    template._compiled  # noqa: B018 - fail on syntax errors now, not per record
    template.example_turns  # noqa: B018 - and on an example that does not fit the template
    return template


def validation_problems(exc: ValidationError) -> str:
    """Each problem as `field: message`; one about the whole template or answer as its message."""
    problems = [(".".join(map(str, e["loc"])), e["msg"].removeprefix("Value error, ")) for e in exc.errors()]
    return "; ".join(f"{where}: {message}" if where else message for where, message in problems)
