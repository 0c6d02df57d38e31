from __future__ import annotations

import pytest

from augment_it.templates import RenderError, TemplateError, extract_json, load_template, parse_template
from tests.conftest import DATA, EXAMPLES

TEMPLATE = """
name: t
model: m
prompt: "Describe {{ name }}"
output: {summary: string, score: integer, tags: "list[string]"}
"""


def test_render_is_strict_about_missing_and_empty_fields() -> None:
    template = parse_template(TEMPLATE)
    assert template.render({"name": "Acme"}) == (None, "Describe Acme")
    with pytest.raises(RenderError, match="needs field 'name'"):
        template.render({"name": None})
    undefined = load_template(str(DATA / "bad" / "undefined-variable.yaml"))
    with pytest.raises(RenderError, match="template 'undefined-variable' needs field 'founder'"):
        undefined.render({"name": "Acme"})


def test_sandbox_refuses_unsafe_attribute_access() -> None:
    escape = "{{ name.__class__.__mro__[1].__subclasses__() }}"
    template = parse_template(f'name: t\nmodel: m\nprompt: "{escape}"')
    with pytest.raises(RenderError, match="unsafe"):
        template.render({"name": "x"})


def test_output_schema_and_parsing() -> None:
    template = parse_template(TEMPLATE)
    schema = template.json_schema()
    assert schema["required"] == ["summary", "score", "tags"] and schema["additionalProperties"] is False
    assert template.parse_answer('```json\n{"summary": "s", "score": "7", "tags": ["a"]}\n```') == {
        "summary": "s", "score": 7, "tags": ["a"]}
    with pytest.raises(ValueError, match="not the JSON object asked for"):
        template.parse_answer((DATA / "bad" / "not-json-answer.txt").read_text())
    with pytest.raises(ValueError, match="score"):
        template.parse_answer('{"summary": "s", "score": "high", "tags": []}')


def test_plain_text_template_fills_a_field_named_after_it() -> None:
    template = parse_template("name: one-liner\nmodel: m\nprompt: hi")
    assert template.output_fields == {"one_liner": "string"}
    assert template.parse_answer(" Hello ") == {"one_liner": "Hello"}
    assert extract_json('noise {"a": 1} noise') == {"a": 1}


def test_bad_template_files_say_what_is_wrong() -> None:
    with pytest.raises(TemplateError, match="prompt: Field required"):
        parse_template("name: t\nmodel: m\n")
    with pytest.raises(TemplateError, match="line 1"):
        parse_template("name: t\nmodel: m\nprompt: '{{ name '")
    assert load_template(str(EXAMPLES / "templates" / "company-profile.yaml")).version
